"""The training step as a Databricks job through Dagster Pipes, offline: the real
``databricks-sdk`` and the real ``dagster-databricks`` Pipes clients (cluster and serverless)
against a stand-in workspace (``fake_workspace``) that runs the submitted task's script as a
local process. Needs dagster-databricks: runs in the Databricks environment (``make
test-databricks``); skipped where it is not installed."""

from __future__ import annotations

import zipfile
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dagster_databricks")

from deltalake import write_deltalake  # noqa: E402

from ml_assets.defs.models.assets import build_model  # noqa: E402
from ml_assets.lib.lakehouse import TableId  # noqa: E402
from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER, ENCODING  # noqa: E402
from ml_assets.lib.training_sets.churn import TRAINING_SET  # noqa: E402
from ml_assets.programs.reporting import materialization_metadata, run_check_results  # noqa: E402
from ml_assets.resources.lakehouse import LocalDeltaLakehouse  # noqa: E402
from ml_assets.resources.links import UiLinks
from ml_assets.resources.mlflow import LocalMlflow  # noqa: E402
from ml_assets.resources.spark import EmbeddedSailSpark  # noqa: E402
from ml_assets.resources.training import DatabricksTraining  # noqa: E402
from ml_assets_tests.fake_workspace import FakeWorkspace  # noqa: E402

churn_classifier = build_model(CHURN_CLASSIFIER)

TOKEN = "dapi-fake-0123456789"
ASSET = "models/churn_classifier"


def _training_set(rows: int = 900, seed: int = 3) -> pd.DataFrame:
    """A training set with the declared columns and a learnable label (logins predict it)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user_id": np.arange(rows, dtype="int64")})
    for column in TRAINING_SET.columns:
        name, kind = column.name, column.spark_type.simpleString()
        if name in ("user_id", "label_ts", "churned", "split"):
            continue
        if kind == "bigint":
            frame[name] = rng.poisson(5, rows).astype("int64")
        elif kind == "double":
            frame[name] = rng.gamma(2.0, 10.0, rows)
        elif name in ENCODING.categories:
            frame[name] = rng.choice(ENCODING.categories[name], rows)
    odds = 1.5 - 0.4 * frame["logins_30d"] + rng.normal(0, 0.7, rows)
    frame["churned"] = (odds > -0.5).astype("int32")
    start = pd.Timestamp("2026-01-05", tz="UTC")
    frame["label_ts"] = start + pd.to_timedelta(np.arange(rows) // 30, unit="D")
    position = np.arange(rows) / rows
    frame["split"] = np.where(
        position < 0.6, "train", np.where(position < 0.8, "validation", "test")
    )
    return frame


@pytest.fixture
def workspace(tmp_path):
    with FakeWorkspace(tmp_path / "workspace", TOKEN) as fake:
        yield fake


def _resources(
    tmp_path: Path, workspace: FakeWorkspace, token: str = TOKEN, **launcher
) -> dict[str, object]:
    warehouse = tmp_path / "warehouse"
    path = TableId.parse(str(TRAINING_SET.name)).location(str(warehouse))
    write_deltalake(str(path), _training_set())
    return {
        "lakehouse": LocalDeltaLakehouse(warehouse_dir=str(warehouse), spark=EmbeddedSailSpark()),
        "mlflow_tracking": LocalMlflow(home=str(tmp_path / "home")),
        "training_launcher": DatabricksTraining(
            host=workspace.host,
            token=token,
            volume=str(workspace.root / "Volumes" / "main" / "ml_assets" / "pipes"),
            poll_interval_seconds=0.2,
            **launcher,
        ),
        # the MLflow links of a Databricks deployment: the workspace's pages
        "ui_links": UiLinks(mlflow_url=workspace.host, mlflow_kind="databricks"),
    }


def _materialize(resources, instance=None, **config) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [churn_classifier],
        resources=resources,
        instance=instance,
        run_config={"ops": {"models__churn_classifier": {"config": {"n_trials": 3, **config}}}},
        raise_on_error=False,
    )


@pytest.mark.parametrize(
    "cluster_id", ["0123-456789-abcdefgh", None], ids=["cluster", "serverless"]
)
def test_the_training_job_runs_through_pipes_and_reports_back(tmp_path, workspace, cluster_id):
    resources = _resources(tmp_path, workspace, cluster_id=cluster_id)
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize(resources, instance)
    assert result.success, workspace.log(1)[-3000:]

    (body,) = workspace.submitted
    (task,) = body["tasks"]
    script, *parameters = [
        task["spark_python_task"]["python_file"],
        *task["spark_python_task"]["parameters"],
    ]
    assert script.endswith("/train_model.py") and script.startswith(str(workspace.root / "Volumes"))
    assert parameters[:4] == ["--code", parameters[1], "--pipes-io", "volumes"]
    assert "--dagster-pipes-context" in parameters and "--dagster-pipes-messages" in parameters
    if cluster_id:
        assert task["existing_cluster_id"] == cluster_id
        pins = [lib["pypi"]["package"] for lib in task["libraries"]]
    else:
        assert "existing_cluster_id" not in task and task["environment_key"] == "ml_assets"
        (environment,) = body["environments"]
        pins = environment["spec"]["dependencies"]
    assert any(p.startswith("dagster-pipes==") for p in pins) and all("==" in p for p in pins)
    with zipfile.ZipFile(parameters[1]) as shipped:  # the orchestrator's code travelled
        assert "ml_assets/lib/models/training.py" in shipped.namelist()

    metadata = materialization_metadata(result, ASSET)
    assert metadata["trained"].startswith("Databricks job on")
    assert metadata["Databricks Job Run URL"].endswith("/#job/runs/1")
    assert metadata["n_trials"] == "3" and 0.5 < metadata["test_roc_auc"] <= 1.0
    assert metadata["mlflow_run"].startswith(f"{resources['ui_links'].mlflow_url}/ml/experiments/")
    assert metadata["mlflow_run"].endswith(f"/runs/{metadata['mlflow_run_id']}")
    checks = {c.check_name: c for c in run_check_results(result)}
    assert checks["trials_recorded"].passed
    assert checks["trials_recorded"].description.startswith("3 child runs recorded under")
    assert checks["metrics_meet_thresholds"].passed
    client = LocalMlflow(home=str(tmp_path / "home")).client()
    parent = client.get_run(metadata["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ml_assets.dagster_run_id"] == result.run_id
    logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("ml_assets code from" in m for m in logs)  # the job's log, through Pipes
    assert any("trials in" in m and "trials/s" in m for m in logs)
    # the Pipes files are cleaned up; the code stays, named by its hash
    assert not list((Path(resources["training_launcher"].volume) / "tmp").iterdir())


def test_a_failing_check_comes_back_failed_and_a_failed_job_fails_the_step(tmp_path, workspace):
    resources = _resources(tmp_path, workspace, cluster_id="0123-456789-abcdefgh")
    result = _materialize(resources, min_test_roc_auc=0.999)
    (check,) = [c for c in run_check_results(result) if c.check_name == "metrics_meet_thresholds"]
    assert not check.passed and check.description.startswith("1 threshold(s) breached: roc_auc")

    broken = {**resources, "mlflow_tracking": LocalMlflow(home="/proc/no-such-home")}
    failed = _materialize(broken)
    assert not failed.success
    assert not [c for c in run_check_results(failed)]  # nothing is reported as passed


def test_a_refused_token_is_named_before_any_job_starts(tmp_path, workspace):
    resources = _resources(tmp_path, workspace, "dapi-wrong", cluster_id="0123-456789-abcdefgh")
    result = _materialize(resources)
    assert not result.success and workspace.submitted == []
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.to_string()
    assert "refused the credentials" in message and "dapi-wrong" not in message
