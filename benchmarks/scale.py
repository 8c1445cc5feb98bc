"""Cost as work grows: the heavy path at several numbers of users, time and peak memory per
size, and the fitted exponent per step.

    .venv/bin/python benchmarks/scale.py [--users 5000 20000 80000] [--model churn_classifier]

Each size runs in a process of its own (so that its peak resident memory is its own: the
embedded engine runs in that process) on a fresh home: the demo source's calendar at that
many users is landed (by another process: the source is not on the heavy path), then one
Dagster run of the main job materializes the heavy path of one model: raw users and events
(every day), the daily and windowed features, the profile, the labels and the training set,
training, registration, the promotion gate and the batch predictions, with their asset
checks. Reported per size: landed events (and the landing's time and peak), the run's wall time,
each step's time, the peak RSS and the steps that raised it most (RSS sampled every 0.1 s,
read against the steps' start and end in the run's event log); then each step's exponent
``b`` in ``time ~ users^b`` (least squares on the logs). A step with ``b`` well above 1
grows faster than its input; ``b`` near 0 is a fixed cost. The anchor is the size itself:
linear growth is ``b = 1``. Steps under a second at the largest size (mostly asset checks)
are summed. Each size's home is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SUPERLINEAR = 1.15  # an exponent above this is named
MIN_STEP_S = 1.0  # steps shorter than this at the largest size are summed, not fitted


def heavy_path(model_name: str) -> list:
    """The daily features' line and the model's retraining line (``defs/automation``), less
    the endpoint config and the prediction drift: ingestion to batch predictions."""
    import dagster as dg

    from ml_assets import names
    from ml_assets.defs.automation import DAILY_FEATURE_KEYS, retraining_keys
    from ml_assets.lib.models.catalog import model_named

    model = model_named(model_name)
    left_out = {dg.AssetKey(model.endpoint_config_key), dg.AssetKey(model.prediction_drift_key)}
    return [
        dg.AssetKey(names.RAW_USERS_KEY),
        dg.AssetKey(names.RAW_USERS_QUARANTINE_KEY),
        dg.AssetKey(names.USER_PROFILE_KEY),
        *DAILY_FEATURE_KEYS,
        *(k for k in retraining_keys(model) if k not in left_out),
    ]


def one_size(users: int, model_name: str, home: Path) -> dict:
    """Land ``users`` users over the demo calendar (in a child process), then run the heavy
    path in this process on ``home``."""
    import dagster as dg

    from ml_assets import names
    from ml_assets.definitions import build_definitions
    from ml_assets.deployments import current_settings
    from ml_assets.programs.memory import PeakMemory

    settings = current_settings({**os.environ, "ML_ASSETS_HOME": str(home)})
    # The source is generated in a process of its own: it is not part of the heavy path, and
    # the memory its pandas frames took would stay in this process's peak (at 80,000 users
    # several GiB, with ingestion on top more than this machine's 24 GiB).
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, __file__, "--land", str(users), str(settings.landing_dir)],
        capture_output=True,
        text=True,
    )
    if child.returncode != 0:
        raise SystemExit(f"landing {users} users failed: {child.stderr[-3000:]}")
    land_s = time.perf_counter() - started
    land_peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    event_lines = int(child.stdout.split()[-1])
    defs = build_definitions(settings)
    job = defs.resolve_job_def(names.MAIN_JOB)
    keys = job.partitions_def.get_partition_keys()
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance, PeakMemory(interval=0.1) as memory:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=heavy_path(model_name),
            tags={
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            },
            raise_on_error=False,
        )
        windows = step_windows(instance, result.run_id)
    run_s = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"the heavy path failed at {users} users (--keep keeps its home)")
    steps = {
        e.step_key: e.event_specific_data.duration_ms / 1000
        for e in result.all_events
        if e.event_type_value == "STEP_SUCCESS"
    }
    return {
        "users": users,
        "events": event_lines,
        "land_s": land_s,
        "land_peak_rss_mib": land_peak_mib,
        "run_s": run_s,
        "steps": steps,
        "peak_rss_mib": memory.result().tree_bytes / 2**20,
        "step_rss_rise_mib": {s: b / 2**20 for s, b in memory.rises(windows).items()},
        "home": str(home),
    }


def land_source(users: int, landing_dir: str) -> int:
    """In this process: land the demo calendar at ``users`` users; the event lines landed."""
    from ml_assets.lib.source import SCALES, land

    return land(SCALES["demo"].model_copy(update={"users": users}), Path(landing_dir)).event_lines


def step_windows(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """Each step's start and end (wall clock), from the run's event log."""
    starts, windows = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            windows[event.step_key] = (starts.get(event.step_key, entry.timestamp), entry.timestamp)
    return windows


def failure(child: subprocess.CompletedProcess) -> str:
    """Why a size's process failed, and in which step (the last one the run started)."""
    steps = re.findall(r'STEP_START - Started execution of step "([^"]+)"', child.stderr)
    where = f" during step {steps[-1]}" if steps else ""
    if child.returncode == -signal.SIGKILL:
        return f"killed (SIGKILL: most likely the kernel's out-of-memory killer){where}"
    return f"exit code {child.returncode}{where}: {child.stderr[-2000:]}"


def exponent(sizes: list[int], seconds: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(np.maximum(seconds, 1e-3)), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[5_000, 20_000, 80_000])
    parser.add_argument("--model", default="churn_classifier")
    parser.add_argument("--keep", action="store_true", help="keep each size's home")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child's size
    parser.add_argument("--home", help=argparse.SUPPRESS)  # and its home
    parser.add_argument("--land", nargs=2, help=argparse.SUPPRESS)  # a child's landing
    args = parser.parse_args()
    if args.land:
        print(land_source(int(args.land[0]), args.land[1]), flush=True)
        return
    if args.one:
        print("RESULT " + json.dumps(one_size(args.one, args.model, Path(args.home))), flush=True)
        return
    runs, failed = [], []
    for users in sorted(args.users):
        home = tempfile.mkdtemp(prefix=f"ml_assets_scale_{users}_")
        try:
            child = subprocess.run(
                [sys.executable, __file__, "--one", str(users), "--model", args.model]
                + ["--home", home],
                capture_output=True,
                text=True,
            )
        finally:
            if not args.keep:
                shutil.rmtree(home, ignore_errors=True)
        found = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
        if child.returncode != 0 or not found:
            failed.append(users)
            print(f"{users:>7,} users: FAILED, {failure(child)}", flush=True)
            continue
        run = json.loads(found[-1].removeprefix("RESULT "))
        runs.append(run)
        top = sorted(run["step_rss_rise_mib"].items(), key=lambda kv: -kv[1])[:3]
        print(
            f"{users:>7,} users: {run['events']:>11,} events; landing {run['land_s']:6.1f} s "
            f"(peak RSS {run['land_peak_rss_mib']:,.0f} MiB), "
            f"heavy path {run['run_s']:6.1f} s, peak RSS {run['peak_rss_mib']:,.0f} MiB; "
            "raised by: " + ", ".join(f"{step} +{mib:,.0f} MiB" for step, mib in top),
            flush=True,
        )
    if len(runs) >= 2:
        summarize(runs, args.model)
    if args.keep:
        print("\n(homes kept for inspection: " + ", ".join(r["home"] for r in runs) + ")")
    if failed:
        sys.exit(f"failed at {', '.join(f'{u:,}' for u in failed)} users")


def summarize(runs: list[dict], model: str) -> None:
    """Each step's exponent over the sizes that ran."""
    sizes = [r["users"] for r in runs]
    print(f"\nexponent b in time ~ users^b over {sizes} users ({model}):")
    rows = [("heavy path (the run), s", [r["run_s"] for r in runs])]
    rows.append(("peak RSS, MiB", [r["peak_rss_mib"] for r in runs]))
    steps = [s for s in runs[-1]["steps"] if all(s in r["steps"] for r in runs)]
    timed = sorted(steps, key=lambda s: -runs[-1]["steps"][s])
    big = [s for s in timed if runs[-1]["steps"][s] >= MIN_STEP_S]
    rows += [(f"{s}, s", [r["steps"][s] for r in runs]) for s in big]
    small = [s for s in timed if s not in big]
    if small:
        totals = [sum(r["steps"][s] for s in small) for r in runs]
        rows.append((f"{len(small)} steps under {MIN_STEP_S} s each (checks), s", totals))
    for name, values in rows:
        b = exponent(sizes, values)
        flag = "  <- faster than linear" if b > SUPERLINEAR else ""
        shown = "  ".join(f"{v:9.1f}" for v in values)
        print(f"  {name:64s} {shown}   b = {b:5.2f}{flag}")


if __name__ == "__main__":
    main()
