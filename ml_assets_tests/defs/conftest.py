from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import names
from ml_assets.definitions import build_definitions
from ml_assets.deployments import Settings, build_resources, current_settings
from ml_assets.programs.instance import local_instance
from ml_assets.programs.reporting import (
    failed_steps,
    materialization_metadata,
    run_check_results,
)

__all__ = ["evaluate_checks", "instance_at", "materialization_metadata", "tiny_settings"]
from ml_assets.programs.run import run_main_job


def tiny_settings(home: Path) -> Settings:
    return current_settings({"ML_ASSETS_HOME": str(home), "ML_ASSETS_SCALE": "tiny"})


@pytest.fixture(scope="session")
def ingested_once(tmp_path_factory) -> tuple[Path, str]:
    """The home the tiny graph's run was materialized in, and the run's id: the paths in its
    metadata (reports, stores) name this home, not the copies the tests use."""
    return built_once(_session_root(tmp_path_factory) / "ingested")


@pytest.fixture(scope="session")
def ingested(ingested_once, tmp_path_factory) -> tuple[Path, dg.ExecuteInProcessResult]:
    """The whole graph materialized once on the tiny scale (all partitions, one run), once per
    session: the first worker to ask runs it (``built_once``); each worker then has a copy of
    its own, since its tests write into it, and the run's result read back from that copy's
    instance (``stored_result``)."""
    pristine, run_id = ingested_once
    home = tmp_path_factory.mktemp("ingested")
    shutil.copytree(pristine, home, dirs_exist_ok=True)
    return home, stored_result(home, run_id)


def _session_root(tmp_path_factory) -> Path:
    """The session's temporary root: under pytest-xdist each worker's base directory is in
    the one the controller made for the session, which the workers share."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(root: Path) -> tuple[Path, str]:
    """The tiny graph's home under ``root`` and its run's id, built by whichever process
    takes ``root/lock`` first while the others wait on it (at most the one run's time; the
    workers start with the files that build their own homes). Nothing in it changes after,
    but MLflow's artifact directory gains the new runs and models the copies log: their
    experiments' artifact location is this home's (new directories only, none removed)."""
    root.mkdir(parents=True, exist_ok=True)
    home, done = root / "home", root / "run_id"
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(home, ignore_errors=True)  # a build that failed in another worker
            with instance_at(home) as instance:
                result = run_main_job(tiny_settings(home), instance)
            assert result.success, f"the tiny graph failed: {failed_steps(result)}"
            stored = stored_result(home, result.run_id)
            assert _kinds(stored) == _kinds(result), "the stored run differs from the result"
            done.write_text(result.run_id)
    return home, done.read_text()


# stored when the run is created, before it executes: not in execute_in_process's result
PLANNED = {"ASSET_MATERIALIZATION_PLANNED", "ASSET_CHECK_EVALUATION_PLANNED"}


def stored_result(home: Path, run_id: str) -> dg.ExecuteInProcessResult:
    """The main job's run in the home's instance as the result ``execute_in_process``
    returned: the same events in the same order (the tests read events, not outputs)."""
    with instance_at(home) as instance:
        run = instance.get_run_by_id(run_id)
        events = [
            e.dagster_event
            for e in instance.all_logs(run_id)
            if e.dagster_event and e.dagster_event.event_type_value not in PLANNED
        ]
    assert run is not None and events, f"run {run_id} is not in {home}"
    job = build_definitions(tiny_settings(home)).resolve_job_def(names.MAIN_JOB)
    return dg.ExecuteInProcessResult(events, run, None, job)


def _kinds(result: dg.ExecuteInProcessResult) -> list[tuple[str, str | None]]:
    return [(e.event_type_value, e.step_key) for e in result.all_events]


def instance_at(home: Path) -> dg.DagsterInstance:
    """A persistent instance under the home, as ``make run`` uses: checks that read the
    latest materialization's metadata (the training set's lineage) find it there."""
    return local_instance(home / "dagster_home")


@pytest.fixture
def home(ingested, tmp_path) -> Path:
    """A private copy of the ingested state, free to corrupt."""
    shutil.copytree(ingested[0], tmp_path / "home")
    return tmp_path / "home"


@pytest.fixture
def resources(home):
    return build_resources(tiny_settings(home))


# checks computed inside the materialization itself (they run when the asset does)
IN_ASSET_CHECKS = {
    names.CHECK_ROWS_CONSERVED,
    names.CHECK_METRICS_MEET_THRESHOLDS,
    names.CHECK_TRIALS_RECORDED,
    names.CHECK_GATE_PASSED,
}


def evaluate_checks(home: Path, asset: str) -> dict[str, dg.AssetCheckEvaluation]:
    """Run the standalone checks of one asset, as the UI's 'Execute checks' does."""
    key = dg.AssetKey(asset.split("/"))
    defs = build_definitions(tiny_settings(home))
    standalone = [
        k
        for k in defs.resolve_asset_graph().asset_check_keys
        if k.asset_key == key and k.name not in IN_ASSET_CHECKS
    ]
    selection = dg.AssetSelection.checks(*standalone)
    defs = dg.Definitions.merge(
        defs, dg.Definitions(jobs=[dg.define_asset_job("checks_only", selection=selection)])
    )
    with instance_at(home) as instance:
        result = defs.resolve_job_def("checks_only").execute_in_process(
            instance=instance, raise_on_error=False
        )
    return {c.check_name: c for c in run_check_results(result)}
