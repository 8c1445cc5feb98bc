"""``make check``: the asset checks as a CI gate.

In a temporary ``ML_ASSETS_HOME`` on the tiny scale, materialize the whole graph, print every
asset check (asset, check, severity, passed, what it observed), write JUnit XML (one test case
per check, so CI shows them like tests), and exit non-zero when a check of severity ERROR
failed or a step failed (a promotion gate refusing a model fails its step).

    python -m ml_assets.programs.check [--junit test-results/asset-checks.xml] [--config run.yaml]
                              [--home DIR] [--scale tiny]
                              [--inject drift|leakage|regression]
                              [--fingerprint test-results/lane-<engine>.json]

The engine lane is ``ML_ASSETS_ENGINE`` (``make check ENGINE=sail|sail-cluster|spark``); the
``spark`` lane's local cluster is started when it is not running and stopped afterwards. The
report and the JUnit properties name the engine, and the lane's fingerprint (checks, row counts
and content digests of every table, the training set's hash) is written for
``python -m ml_assets.programs.lanes compare`` (by an ``--inject`` run only to a file given).

``--config`` is run config as the Dagster launchpad takes it (YAML or JSON), e.g. to tighten a
threshold: ``{"ops": {"models__churn_classifier": {"config": {"min_test_roc_auc": 0.9}}}}``.
``--inject drift`` or ``--inject leakage`` makes the demo source drift (sessions thinned from
three weeks before the end) or leak (plan downgrades backdated before the churn), to see the
gate fail: ``feature_drift_within_limits`` or ``no_backdated_changes``. ``--inject regression``
plays a bad rollout after the run (``programs/rollout``): a churn version trained with its
engagement features zeroed is promoted by a dry-run gate, ``model_quality_within_limits`` fails
with ERROR on the outcomes of its scoring days, and the model's quality sensor rolls it back.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import dagster as dg
import yaml

from ml_assets.deployments import build_resources, current_settings
from ml_assets.lib.source import SCALES
from ml_assets.programs.instance import local_instance
from ml_assets.programs.lanes import engine_lane, fingerprint, lane_peak_rss_mib
from ml_assets.programs.reporting import check_rows, failed_steps, format_table, run_check_results
from ml_assets.programs.rollout import bad_rollout
from ml_assets.programs.run import run_main_job
from ml_assets.programs.signals import keep_sigterm_deliverable

# three weeks: the 7-day windows and most of the 30-day ones fill with the thinned sessions,
# enough to move half of the 21 inputs (90-day windows move little in that time)
DRIFT_DAYS_BEFORE_END = 21
INJECTIONS = {
    "drift": lambda scale: {
        "ML_ASSETS_INJECT_DRIFT_FROM": (
            SCALES[scale].end_date - dt.timedelta(days=DRIFT_DAYS_BEFORE_END)
        ).isoformat()
    },
    "leakage": lambda scale: {"ML_ASSETS_INJECT_LEAKAGE": "1"},
    "regression": lambda scale: {},  # a bad rollout after the main job (programs/rollout)
}


def junit(
    checks: list[dg.AssetCheckEvaluation],
    steps: dict[str, str],
    seconds: float,
    properties: dict[str, str] | None = None,
) -> ET.Element:
    suite = ET.Element(
        "testsuite",
        name=f"asset_checks[{properties['engine']}]" if properties else "asset_checks",
        tests=str(len(checks) + len(steps)),
        failures=str(
            sum(not c.passed and c.severity == dg.AssetCheckSeverity.ERROR for c in checks)
            + len(steps)
        ),
        time=f"{seconds:.1f}",
    )
    if properties:
        props = ET.SubElement(suite, "properties")
        for name, value in properties.items():
            ET.SubElement(props, "property", name=name, value=value)
    for check in sorted(checks, key=lambda c: (c.asset_key.to_user_string(), c.check_name)):
        case = ET.SubElement(
            suite, "testcase", classname=check.asset_key.to_user_string(), name=check.check_name
        )
        observed = ", ".join(f"{k}={getattr(v, 'value', v)}" for k, v in check.metadata.items())
        if not check.passed:
            tag = "failure" if check.severity == dg.AssetCheckSeverity.ERROR else "skipped"
            ET.SubElement(
                case, tag, message=f"{check.severity.value}: {check.description or ''}"
            ).text = observed
        ET.SubElement(case, "system-out").text = f"{check.description or ''}\n{observed}"
    for step, message in steps.items():
        case = ET.SubElement(suite, "testcase", classname="steps", name=step)
        ET.SubElement(
            case, "failure", message=message.splitlines()[0] if message else "failed"
        ).text = message
    return suite


def read_run_config(parser: argparse.ArgumentParser, path: str) -> dict | None:
    """``--config``'s run config, or a usage error (exit 2) saying why it cannot be one,
    before anything runs."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(f"--config {path}: cannot be read ({exc}).")
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        parser.error(f"--config {path}: not YAML or JSON ({exc}).".replace("\n", " "))
    if config is not None and not isinstance(config, dict):
        parser.error(
            f"--config {path}: expected run config as a mapping, e.g. "
            f'{{"ops": {{...}}}}, found a {type(config).__name__}.'
        )
    return config


def lane_file(given: str | None, injected: list[str], engine: str) -> Path | None:
    """Where the lane's fingerprint goes: the file given; else the lane's own file, unless
    the source was made bad on purpose (``make lanes-compare`` would then compare a broken
    run with the other lanes' clean ones)."""
    if given:
        return Path(given)
    return None if injected else Path(f"test-results/lane-{engine}.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--junit", default="test-results/asset-checks.xml")
    parser.add_argument("--config", help="run config file (YAML or JSON)")
    parser.add_argument("--home", help="ML_ASSETS_HOME to use (default: a new temporary one)")
    parser.add_argument("--scale", default="tiny")
    parser.add_argument(
        "--inject",
        choices=sorted(INJECTIONS),
        action="append",
        default=[],
        help="make the demo source bad, to see the checks fail: 'drift' (sessions thinned "
        "from three weeks before the calendar ends), 'leakage' (backdated plan downgrades) or "
        "'regression' (a worse churn champion rolled out after the run: caught by "
        "model_quality_within_limits and rolled back by its sensor)",
    )
    parser.add_argument(
        "--fingerprint",
        help="where to write the lane's fingerprint (default test-results/lane-<engine>.json; "
        "with --inject, none unless given: a run made bad on purpose is not the lane's)",
    )
    args = parser.parse_args(argv)
    keep_sigterm_deliverable()
    home = Path(args.home or tempfile.mkdtemp(prefix="ml_assets_check_"))
    environ = {**os.environ, "ML_ASSETS_HOME": str(home), "ML_ASSETS_SCALE": args.scale}
    for name in args.inject:
        environ |= INJECTIONS[name](args.scale)
    settings = current_settings(environ)
    run_config = read_run_config(parser, args.config) if args.config else None
    injected = f" injected={','.join(args.inject)}" if args.inject else ""
    print(
        f"make check: engine={settings.engine} scale={settings.scale} home={settings.home}"
        f"{injected}"
    )
    with engine_lane(settings) as remote:
        started = time.perf_counter()
        with local_instance(home / "dagster_home") as instance:
            result = run_main_job(settings, instance, run_config, launched_by="make check")
            rollout = (
                bad_rollout(settings, instance)
                if "regression" in args.inject and result.success
                else None
            )
        seconds = time.perf_counter() - started
        fingerprint_path = lane_file(args.fingerprint, args.inject, settings.engine)
        if fingerprint_path is not None:
            lane = fingerprint(settings, result, build_resources(settings)["lakehouse"], seconds)
            fingerprint_path.parent.mkdir(parents=True, exist_ok=True)
            fingerprint_path.write_text(json.dumps(lane, indent=1, default=str) + "\n")
        peak = lane_peak_rss_mib(settings)
    checks = run_check_results(result)
    steps = failed_steps(result)
    for later in rollout.results if rollout else []:
        checks += run_check_results(later)
        steps |= failed_steps(later)
    print()
    print(format_table(["asset", "check", "severity", "passed", "observed"], check_rows(checks)))
    failed = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    warned = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.WARN]
    junit_path = Path(args.junit)
    junit_path.parent.mkdir(parents=True, exist_ok=True)
    properties = {
        "engine": settings.engine,
        "spark_remote": remote or "embedded",
        "scale": settings.scale,
        "seconds": f"{seconds:.1f}",
    }
    ET.ElementTree(junit(checks, steps, seconds, properties)).write(
        junit_path, encoding="utf-8", xml_declaration=True
    )
    print()
    for line in rollout.lines if rollout else []:
        print(line)
    for step, message in steps.items():
        print(f"step {step} failed: {message}")
    lane_written = fingerprint_path or "none (an injected run is not the lane's)"
    print(
        f"make check: {len(checks)} checks, {len(failed)} failed (ERROR), {len(warned)} warnings, "
        f"{len(steps)} failed steps in {seconds:.1f} s on engine {settings.engine} (peak memory "
        f"MiB: {peak}); JUnit XML: {junit_path}; lane fingerprint: {lane_written}"
    )
    ok = result.success and (rollout is None or rollout.success)
    status = 1 if failed or steps or not ok else 0
    if args.home is None and status == 0:
        shutil.rmtree(home, ignore_errors=True)  # kept when something failed, to look into
    elif status:
        print(f"the state is kept for inspection in {home}")
    passed = sum(c.passed for c in checks)
    print(f"checks: {passed} passed, {len(checks) - passed} failed")  # the plain closing line
    return status


if __name__ == "__main__":
    sys.exit(main())
