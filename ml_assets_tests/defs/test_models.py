"""The churn classifier on the tiny scale: nested MLflow runs, a probability-returning pyfunc,
lineage tags, and both in-asset checks failing when they should."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
import pytest
from mlflow.entities import RunStatus

from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.lib.models.training import (
    TrainingRequest,
    TrainingRequestError,
    TrainingSettings,
    TrainingSource,
    read_training_frame,
)
from ml_assets.lib.tracking import Tracking
from ml_assets.lib.training_sets.churn import MODEL_FEATURES, TRAINING_SET
from ml_assets.programs.reporting import run_check_results
from ml_assets.resources.mlflow import LocalMlflow
from ml_assets.resources.training import SCRIPT, SubprocessTraining
from ml_assets_tests.churn import churn_classifier
from ml_assets_tests.defs.conftest import instance_at, materialization_metadata

ASSET = "models/churn_classifier"


def _runs(home):
    tracking = LocalMlflow(home=str(home))
    client = tracking.client()
    experiment = client.get_experiment_by_name(tracking.experiment_name)
    return client, client.search_runs([experiment.experiment_id])


def test_a_parent_run_holds_the_trials_the_model_metrics_plots_and_lineage(ingested):
    home, result = ingested
    metadata = materialization_metadata(result, ASSET)
    client, runs = _runs(home)
    parent = client.get_run(metadata["mlflow_run_id"])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == int(metadata["n_trials"]) == 20
    assert {r.info.status for r in [parent, *children]} == {"FINISHED"}
    assert {"validation_roc_auc", "validation_log_loss"} <= set(children[0].data.metrics)
    for name in (
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "precision_at_threshold",
        "recall_at_threshold",
        "net_value_per_user",
    ):
        assert f"test_{name}" in parent.data.metrics
    assert any(k.startswith("test_roc_auc__plan_tier__") for k in parent.data.metrics)
    tags = parent.data.tags
    assert tags["ml_assets.training_set"] == str(TRAINING_SET.name)
    assert tags["ml_assets.dagster_run_id"] == result.run_id
    assert len(tags["ml_assets.training_set_hash"]) == 64
    assert tags["ml_assets.version.main.features.user_activity"] == "1"
    # links back to Dagster: tags and the run's description (markdown on the run page)
    assert tags["ml_assets.dagster_run_url"] == f"http://127.0.0.1:3000/runs/{result.run_id}"
    asset_url = "http://127.0.0.1:3000/assets/models/churn_classifier"
    assert tags["ml_assets.dagster_asset_url"] == asset_url
    assert f"({asset_url})" in tags["mlflow.note.content"]
    assert "" not in tags.values()  # no empty tag
    experiment = client.get_experiment(parent.info.experiment_id)
    assert "one parent run per materialization" in experiment.tags["mlflow.note.content"]
    # the training set as a dataset input: its Delta table and version, its content hash
    (dataset_input,) = parent.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == str(TRAINING_SET.name)
    assert dataset.digest == tags["ml_assets.training_set_hash"][:32]
    assert dataset.source_type == "delta_table"
    source = json.loads(dataset.source)
    assert source["path"].endswith("training_sets/churn_training_set")
    assert str(source["delta_table_version"]) == metadata["training_set_version"]
    # its schema, read from the frame's column types (lib.models.training.dataset_schema)
    columns = {c["name"]: c for c in json.loads(dataset.schema)["mlflow_colspec"]}
    assert columns["split"] == {"type": "string", "name": "split", "required": True}
    assert columns["user_id"]["type"] == "long" and columns["label_ts"]["type"] == "datetime"
    assert [t.value for t in dataset_input.tags] == ["training"]
    # each trial's run is open while the trial fits: it lasts at least the fit it logs (a run
    # written afterwards lasts the few ms of writing it, whatever the fit took)
    for run in children:
        lasted = (run.info.end_time - run.info.start_time) / 1000
        assert lasted >= run.data.metrics["fit_seconds"] - 0.002, (lasted, run.data.metrics)
    durations = sorted((r.info.end_time - r.info.start_time) / 1000 for r in children)
    starts = sorted(r.info.start_time for r in children)
    assert starts[-1] - starts[0] >= 0.8 * sum(durations[:-1]) * 1000
    # Dagster links into the MLflow UI (make mlflow-ui's address)
    experiment_url = f"http://127.0.0.1:5000/#/experiments/{parent.info.experiment_id}"
    assert metadata["mlflow_run"] == f"{experiment_url}/runs/{parent.info.run_id}"
    assert metadata["logged_model"] == f"{experiment_url}/models/{metadata['logged_model_id']}"
    assert metadata["mlflow_experiment_url"] == experiment_url
    assert "mlflow_ui" not in metadata  # no shell command to copy
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {
        f"plots/{n}.png"
        for n in ("roc_curve", "pr_curve", "confusion_matrix", "feature_importance")
    }
    assert "data:image/png;base64," in metadata["plots"]
    checks = {
        c.check_name: c.passed
        for c in run_check_results(result)
        if c.asset_key.to_user_string() == ASSET
    }
    assert checks == {"metrics_meet_thresholds": True, "trials_recorded": True}


def test_the_pyfunc_returns_probabilities_and_the_xgboost_flavour_loads(ingested):
    home, result = ingested
    run_id = materialization_metadata(result, ASSET)["mlflow_run_id"]
    LocalMlflow(home=str(home)).configure()
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert model.metadata.get_input_schema().input_names() == list(MODEL_FEATURES)
    request = pd.DataFrame(
        [
            {**{c: 0.0 for c in MODEL_FEATURES}, "plan_tier": "premium", "country": "DE"},
            {
                **{c: 3.0 for c in MODEL_FEATURES},
                "plan_tier": "free",
                "country": "ZZ",
                "days_since_last_purchase": None,
                "events_30d_mom_change": None,
            },
        ]
    )
    scores = model.predict(request)
    assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores)  # probabilities, not labels
    booster = mlflow.xgboost.load_model(f"runs:/{run_id}/xgboost_model")
    assert booster.num_features() == len(MODEL_FEATURES)


def _materialize(home, resources, **config) -> dg.ExecuteInProcessResult:
    with instance_at(home) as instance:
        return dg.materialize(
            [churn_classifier],
            resources=resources,
            instance=instance,
            run_config={"ops": {"models__churn_classifier": {"config": {"n_trials": 2, **config}}}},
            raise_on_error=False,
        )


def test_a_model_below_the_thresholds_fails_the_blocking_check(home, resources):
    result = _materialize(home, resources, min_test_roc_auc=0.999)
    (check,) = [c for c in run_check_results(result) if c.check_name == "metrics_meet_thresholds"]
    assert not check.passed
    assert check.description == (
        f"1 threshold(s) breached: roc_auc: candidate {check.metadata['test_roc_auc'].value:.4f}, "
        "threshold >= 0.9990"
    )


class ForgetfulTracking(Tracking):
    """Trial runs that are lost after they end: what trials_recorded is there to notice."""

    @contextmanager
    def run(self, run_name, *, tags=None, nested=False):
        with super().run(run_name, tags=tags, nested=nested) as run:
            yield run
        if nested:
            mlflow.tracking.MlflowClient().delete_run(run.info.run_id)


class ForgetfulMlflow(LocalMlflow):
    def target(self) -> Tracking:
        return ForgetfulTracking(**super().target().to_json())


def test_missing_trial_runs_fail_trials_recorded(home, resources):
    result = _materialize(home, {**resources, "mlflow_tracking": ForgetfulMlflow(home=str(home))})
    (check,) = [c for c in run_check_results(result) if c.check_name == "trials_recorded"]
    assert not check.passed and check.metadata["child_runs"].value == 0


def test_a_run_whose_body_raises_ends_failed_never_running(tmp_path):
    tracking = LocalMlflow(home=str(tmp_path))
    with pytest.raises(RuntimeError, match="boom"), tracking.run("doomed") as run:
        raise RuntimeError("boom")
    status = tracking.client().get_run(run.info.run_id).info.status
    assert status == RunStatus.to_string(RunStatus.FAILED)
    assert mlflow.active_run() is None


ISOLATED = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "ml_assets":
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, Block())
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
row = {c: 1.0 for c in model.metadata.get_input_schema().input_names()}
print(model.predict(pd.DataFrame([row | {"plan_tier": "free", "country": "US"}])).iloc[0])
"""


def test_the_served_model_carries_its_scoring_code_and_loads_without_this_package(ingested):
    home, result = ingested
    run_id = materialization_metadata(result, ASSET)["mlflow_run_id"]
    tracking = LocalMlflow(home=str(home))
    out = subprocess.run(
        [sys.executable, "-c", ISOLATED, tracking.tracking_uri(), f"runs:/{run_id}/model"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert 0.0 < float(out.stdout.strip().splitlines()[-1]) < 1.0
    requirements = tracking.client().download_artifacts(run_id, "model/requirements.txt")
    pinned = Path(requirements).read_text().split()
    assert {r.split("==")[0] for r in pinned} == {
        "mlflow",
        "cloudpickle",
        "xgboost",
        "pandas",
        "numpy",
    }


def test_the_training_step_runs_as_a_pipes_subprocess_with_the_same_result(home, resources):
    """The same recipe, seed and training set in this process and in the Pipes script give
    the same model; the subprocess's logs, metadata and checks come back through Pipes."""
    in_process = _materialize(home, resources)
    with instance_at(home) as instance:
        piped = dg.materialize(
            [churn_classifier],
            resources={**resources, "training_launcher": SubprocessTraining()},
            instance=instance,
            run_config={"ops": {"models__churn_classifier": {"config": {"n_trials": 2}}}},
        )
        logs = [entry.user_message for entry in instance.all_logs(piped.run_id)]
    here, there = (materialization_metadata(r, ASSET) for r in (in_process, piped))
    assert (here["trained"], there["trained"]) == ("in process", "subprocess (Dagster Pipes)")
    assert there["mlflow_run_id"] != here["mlflow_run_id"]
    for name in ("test_roc_auc", "test_log_loss", "test_brier", "best_params", "n_trials"):
        assert there[name] == here[name], name
    assert set(there) == set(here)
    assert any("trials in" in m and "trials/s" in m for m in logs)  # streamed from the script
    checks = {c.check_name: c for c in run_check_results(piped)}
    assert checks["trials_recorded"].passed and checks["metrics_meet_thresholds"].passed
    assert checks["trials_recorded"].description.startswith("2 child runs recorded under")
    assert "description" not in checks["trials_recorded"].metadata  # back in its own field
    parent = LocalMlflow(home=str(home)).client().get_run(there["mlflow_run_id"])
    assert parent.data.tags["ml_assets.dagster_run_id"] == piped.run_id
    assert (
        parent.data.tags["ml_assets.training_set_hash"]
        == (_runs(home)[0].get_run(here["mlflow_run_id"]).data.tags["ml_assets.training_set_hash"])
    )


def test_a_threshold_breached_in_the_subprocess_fails_the_blocking_check(home, resources):
    result = _materialize(
        home, {**resources, "training_launcher": SubprocessTraining()}, min_test_roc_auc=0.999
    )
    (check,) = [c for c in run_check_results(result) if c.check_name == "metrics_meet_thresholds"]
    assert not check.passed
    assert check.description.startswith("1 threshold(s) breached: roc_auc: candidate")


def test_the_script_reads_the_same_training_frame_as_the_step(home, resources):
    lakehouse = resources["lakehouse"]
    version = lakehouse.current_version(TRAINING_SET)
    source = TrainingSource(lakehouse.table_reference(TRAINING_SET), version)
    model = CHURN_CLASSIFIER
    step = lakehouse.read(TRAINING_SET, version=version).select(*model.columns)
    frame = read_training_frame(source, model)
    pd.testing.assert_frame_equal(frame, step.orderBy(*model.order).toPandas())
    with pytest.raises(TrainingRequestError, match="needs a Spark session"):
        read_training_frame(TrainingSource("main.training_sets.churn", version), model)


def test_the_script_refuses_to_run_outside_dagster():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "launched by Dagster Pipes" in out.stderr and "Materialize the asset" in out.stderr


def test_a_training_request_names_what_is_wrong():
    with pytest.raises(TrainingRequestError, match=r"n_trials=0: expected an integer from 1"):
        TrainingSettings(n_trials=0)
    with pytest.raises(TrainingRequestError, match=r"found keys \['settings'\]"):
        TrainingRequest.from_json({"settings": {}})
    request = TrainingRequest.from_json(
        {
            "model": "nope",
            "settings": {},
            "source": {"reference": "/t", "version": 0},
            "run_name": "r",
        }
    )
    with pytest.raises(KeyError, match=r"No model declaration named 'nope'; declared: \["):
        _ = request.declaration
    with pytest.raises(TrainingRequestError, match="settings, source and tags must be objects"):
        TrainingRequest.from_json({"settings": [], "source": {}, "run_name": "r"})


def test_a_job_that_reports_nothing_fails_the_step_naming_the_checks(home, resources):
    silent = SubprocessTraining(python="/bin/true")  # exits 0 without opening Pipes
    result = _materialize(home, {**resources, "training_launcher": silent})
    assert not result.success and not run_check_results(result)
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert (
        "ended without reporting the check(s) ['metrics_meet_thresholds', 'trials_recorded']"
        in (failure.step_failure_data.error.to_string())
    )
