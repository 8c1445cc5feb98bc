from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import names
from ml_assets.definitions import build_definitions
from ml_assets.deployments import Settings, build_resources, current_settings
from ml_assets.programs.instance import local_instance
from ml_assets.programs.reporting import materialization_metadata, run_check_results

__all__ = ["evaluate_checks", "instance_at", "materialization_metadata", "tiny_settings"]
from ml_assets.programs.run import run_main_job


def tiny_settings(home: Path) -> Settings:
    return current_settings({"ML_ASSETS_HOME": str(home), "ML_ASSETS_SCALE": "tiny"})


@pytest.fixture(scope="session")
def ingested(tmp_path_factory) -> tuple[Path, dg.ExecuteInProcessResult]:
    """The whole graph materialized once on the tiny scale (all partitions, one run)."""
    home = tmp_path_factory.mktemp("ingested")
    with instance_at(home) as instance:
        result = run_main_job(tiny_settings(home), instance)
    assert result.success
    return home, result


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
