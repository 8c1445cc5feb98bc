"""Lakehouse Monitoring on the databricks deployment, offline: the real ``databricks-sdk``
against the stand-in workspace's Quality Monitors API. Runs in the Databricks environment
(``make test-databricks``) and in the main one (it needs only the SDK)."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pytest

from ml_assets.defs.monitoring.lakehouse import build_lakehouse_monitor
from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.programs.reporting import materialization_metadata, run_check_results
from ml_assets.resources.databricks import WorkspaceError
from ml_assets.resources.lakehouse_monitoring import DatabricksLakehouseMonitoring
from ml_assets_tests.churn import CHURN_MONITOR
from ml_assets_tests.fake_workspace import FakeWorkspace

TOKEN = "dapi-fake-monitoring"
ASSET = "monitoring/churn_predictions_lakehouse_monitor"
TABLE = "ml_dev.serving.churn_predictions"


@pytest.fixture
def workspace(tmp_path):
    with FakeWorkspace(tmp_path, TOKEN) as fake:
        yield fake


def _monitoring(workspace: FakeWorkspace, token: str = TOKEN) -> DatabricksLakehouseMonitoring:
    return DatabricksLakehouseMonitoring(
        host=workspace.host,
        token=token,
        catalog="ml_dev",
        output_schema="ml_dev.monitoring",
        assets_dir="/Workspace/Shared/ml_assets/lakehouse_monitoring",
        retry_timeout_seconds=5,
    )


def _materialize(monitoring) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [build_lakehouse_monitor(CHURN_CLASSIFIER)],
        resources={"lakehouse_monitoring": monitoring},
        raise_on_error=False,
    )


def test_the_monitor_is_created_as_declared_then_left_alone_and_refreshed(workspace):
    first = _materialize(_monitoring(workspace))
    assert first.success
    created = workspace.monitors[TABLE]
    assert created["inference_log"] == {
        "granularities": ["1 day"],
        "model_id_col": "model_version",
        "prediction_col": "churn_probability",
        "problem_type": "PROBLEM_TYPE_REGRESSION",
        "timestamp_col": "scored_at",
    }
    assert created["output_schema_name"] == "ml_dev.monitoring"
    metadata = materialization_metadata(first, ASSET)
    assert (metadata["action"], metadata["monitor_version"], metadata["refresh_id"]) == (
        "created",
        "1",
        1,
    )
    assert (
        metadata["profile_metrics_table"] == "ml_dev.monitoring.churn_predictions_profile_metrics"
    )
    assert metadata["dashboard"].endswith("/sql/dashboardsv3/dashboard-churn_predictions")
    (check,) = run_check_results(first)
    assert check.passed

    second = materialization_metadata(_materialize(_monitoring(workspace)), ASSET)
    assert (second["action"], second["monitor_version"], second["refresh_id"]) == (
        "unchanged",
        "1",
        2,
    )
    assert [m for m, _ in workspace.monitor_calls].count("PUT") == 0


def test_a_changed_declaration_updates_the_monitor(workspace):
    monitoring = _monitoring(workspace)
    monitoring.ensure(CHURN_MONITOR.lakehouse_monitor)
    hourly = dataclasses.replace(CHURN_MONITOR.lakehouse_monitor, granularities=("1 hour", "1 day"))
    state = monitoring.ensure(hourly)
    assert (state.action, state.monitor_version) == ("updated", "2")
    assert workspace.monitors[TABLE]["inference_log"]["granularities"] == ["1 hour", "1 day"]


def test_a_failed_monitor_fails_its_check(workspace):
    workspace.monitor_status = "MONITOR_STATUS_FAILED"
    result = _materialize(_monitoring(workspace))
    (check,) = run_check_results(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith(f"monitor on {TABLE}: MONITOR_STATUS_FAILED")


def test_a_refused_token_is_named_and_nothing_is_created(workspace):
    with pytest.raises(WorkspaceError, match="refused the credentials") as error:
        _monitoring(workspace, token="dapi-wrong").ensure(CHURN_MONITOR.lakehouse_monitor)
    assert "dapi-wrong" not in str(error.value) and workspace.monitors == {}
