"""The registry stage on the tiny scale: registration, every outcome of the promotion gate,
the consistency check and the rollback job, against the real local MLflow registry.

The session's main run (``ingested``) leaves champion v1. Each other test works on a private
copy of that state; a weak model is made by training on random labels (independent of every
feature) after relaxing the model's own thresholds, so that only the gate stands in its way.
"""

from __future__ import annotations

import re

import dagster as dg
import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.definitions import build_definitions
from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER, ENCODING
from ml_assets.lib.models.golden import golden_examples
from ml_assets.lib.training_sets.churn import LABEL, SPLIT, TRAINING_SET
from ml_assets.programs.reporting import run_check_results, step_failure
from ml_assets.programs.run import champion_summary
from ml_assets.resources.mlflow import LocalMlflow
from ml_assets_tests.churn import (
    churn_classifier,
    churn_classifier_champion,
    churn_classifier_version,
)
from ml_assets_tests.defs.conftest import (
    evaluate_checks,
    instance_at,
    materialization_metadata,
    tiny_settings,
)

NAME = names.CHURN_MODEL_NAME
CHAMPION = "registry/churn_classifier_champion"
GATE_STEP = "registry__churn_classifier_champion"
RELAXED_MODEL = {"n_trials": 2, "min_test_roc_auc": 0.0, "max_test_log_loss_vs_base_rate": 10.0}


def client_for(home):
    return LocalMlflow(home=str(home)).client()


def holder(client, alias) -> str | None:
    """The version holding ``alias``, observed with MLflow's own client."""
    try:
        found = client.get_model_version_by_alias(NAME, alias)
    except MlflowException:
        found = None
    return None if found is None else str(found.version)


def materialize(home, resources, assets, *, model=None, gate=None) -> dg.ExecuteInProcessResult:
    ops = {}
    if model is not None:
        ops["models__churn_classifier"] = {"config": model}
    if gate is not None:
        ops[GATE_STEP] = {"config": gate}
    with instance_at(home) as instance:
        return dg.materialize(
            assets,
            resources=resources,
            instance=instance,
            run_config={"ops": ops},
            raise_on_error=False,
        )


def train_and_gate(home, resources, *, model=None, gate=None) -> dg.ExecuteInProcessResult:
    assets = [churn_classifier, churn_classifier_version, churn_classifier_champion]
    return materialize(home, resources, assets, model=model or {"n_trials": 2}, gate=gate)


def randomize_labels(lakehouse) -> int:
    """Train and validation labels drawn at random (20 % churn), independent of the features;
    the test labels stay real. Returns the training set version with the real labels."""
    real = lakehouse.version(TRAINING_SET)
    rows = lakehouse.read(TRAINING_SET, version=real)
    random = F.when(F.rand(seed=11) < 0.2, F.lit(1)).otherwise(F.lit(0)).cast("int")
    noise = F.when(F.col(SPLIT) == "test", F.col(LABEL)).otherwise(random)
    lakehouse.overwrite(TRAINING_SET, rows.withColumn(LABEL, noise))
    return real


def restore_labels(lakehouse, real: int) -> None:
    lakehouse.overwrite(TRAINING_SET, lakehouse.read(TRAINING_SET, version=real))


def gate_check(result) -> dg.AssetCheckEvaluation:
    (check,) = [c for c in run_check_results(result) if c.check_name == names.CHECK_GATE_PASSED]
    return check


def test_a_fresh_run_leaves_a_gated_champion_that_serves_probabilities(ingested):
    home, result = ingested
    metadata = materialization_metadata(result, CHAMPION)
    assert metadata["champion_version"] == "1" and metadata["mode"] == "enabled"
    assert metadata["decision"] == (
        "passed every gate check against absolute thresholds (no champion yet)"
    )
    assert "- **golden examples**: passed; dormant_free 0." in metadata["gate_checks"]
    assert "- **single-row latency**: passed; p99 " in metadata["gate_checks"]
    assert metadata["latency_p99_ms"] <= 50.0
    client = client_for(home)
    assert holder(client, "champion") == "1"
    assert holder(client, "challenger") is None and holder(client, "previous_champion") is None
    version = client.get_model_version(NAME, "1")
    assert version.status == "READY"
    assert "Training window (label_ts): train 20" in version.description
    assert "main.features.user_activity v1" in version.description
    assert "Intended use:" in version.description
    assert version.tags["ml_assets.gate.status"] == "passed"
    assert version.tags["ml_assets.gate.baseline_version"] == "none"
    assert version.tags["ml_assets.audit.promoted.dagster_run_id"] == result.run_id
    assert len(version.tags["ml_assets.training_set_hash"]) == 64
    assert "" not in version.tags.values()  # no empty tag (the gate's summary when it passed)
    # the version links back to the Dagster runs that trained and registered it
    assert version.tags["ml_assets.dagster_asset_url"] == (
        "http://127.0.0.1:3000/assets/models/churn_classifier"
    )
    assert version.tags["ml_assets.registered_by_dagster_run_url"] == (
        f"http://127.0.0.1:3000/runs/{result.run_id}"
    )
    assert "(http://127.0.0.1:3000/assets/models/churn_classifier)" in version.description
    registered = client.get_registered_model(NAME)
    assert registered.tags == {
        "ml_assets.owner": "ml-platform",
        "ml_assets.use_case": CHURN_CLASSIFIER.use_case,
        "ml_assets.model": "churn_classifier",
    }
    assert registered.description.startswith("Churn risk:")
    purchase = client.get_registered_model("main.models.purchase_propensity")
    assert purchase.description.startswith("Purchase propensity:")  # its own card
    # Dagster links into the MLflow UI: the version, its run, the gate report
    ui = "http://127.0.0.1:5000/#"
    registered_version = materialization_metadata(result, "registry/churn_classifier_version")
    assert registered_version["registered_version"] == f"{ui}/models/{NAME}/versions/1"
    assert registered_version["mlflow_run"].endswith(f"/runs/{version.run_id}")
    assert metadata["challenger_version_url"] == f"{ui}/models/{NAME}/versions/1"
    assert metadata["gate_report_url"] == (
        f"{ui}/experiments/{client.get_run(version.run_id).info.experiment_id}/runs/"
        f"{version.run_id}/artifactPath/promotion_gate/{result.run_id}.json"
    )
    # the champion's run holds the nested trials, the plots and the gate's report
    run = client.get_run(version.run_id)
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    assert len(children) == 20
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "plots",
        "promotion_gate",
        "slice_metrics.csv",
    }
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    scores = pd.Series(
        model.predict(golden_examples(ENCODING)).to_numpy(), index=golden_examples(ENCODING).index
    )
    assert ((scores > 0) & (scores < 1)).all()  # probabilities, not labels
    assert scores["dormant_free"] > scores["engaged_premium"]
    checks = {
        c.check_name: c.passed
        for c in run_check_results(result)
        if c.asset_key.to_user_string() == CHAMPION
    }
    assert checks == {"promotion_gate_passed": True, "champion_alias_consistent": True}
    assert champion_summary(result, CHURN_CLASSIFIER).startswith(
        f"champion: {NAME} v1 (passed every gate check"
    )


def test_a_model_trained_on_random_labels_is_refused_and_the_champion_stays(home, resources):
    randomize_labels(resources["lakehouse"])
    result = train_and_gate(home, resources, model=RELAXED_MODEL)
    assert not result.success
    message = step_failure(result, GATE_STEP)
    assert (
        message.startswith(f"Promotion refused: {NAME} v2 breached")
        and "compared with champion v1 on the same test set:" in message
    )
    lines = message.splitlines()
    breaches = [line for line in lines if line.startswith("  - ")]
    # the champion, scored on the same test set, sets the bar; a model trained on noise can
    # pass 0.75 by chance on a few hundred test rows, never the champion's ~0.9 less 0.01
    (vs_baseline,) = [
        re.fullmatch(r"  - roc_auc vs baseline: candidate (0\.\d+), baseline (0\.\d+), .*", line)
        for line in breaches
        if line.startswith("  - roc_auc vs baseline")
    ]
    candidate, baseline = float(vs_baseline[1]), float(vs_baseline[2])
    assert baseline > 0.85 and candidate < baseline - 0.01
    assert "(baseline - 0.01)" in vs_baseline[0]
    assert all("candidate" in line and "threshold" in line for line in breaches)
    assert lines[-1] == "The champion alias was not moved."
    client = client_for(home)
    assert holder(client, "champion") == "1" and holder(client, "challenger") is None
    tags = client.get_model_version(NAME, "2").tags
    assert tags["ml_assets.gate.status"] == "failed"
    assert tags["ml_assets.gate.baseline_version"] == "1"
    assert tags["ml_assets.audit.refused.reason"].startswith("refused: ")
    assert "roc_auc vs baseline" in tags["ml_assets.gate.summary"]


def test_dry_run_records_the_failure_promotes_anyway_and_rollback_restores(home, resources):
    randomize_labels(resources["lakehouse"])
    result = train_and_gate(home, resources, model=RELAXED_MODEL, gate={"mode": "dry_run"})
    assert result.success  # the failure is recorded, not blocking
    check = gate_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith("dry run: promoted despite")
    client = client_for(home)
    assert holder(client, "champion") == "2" and holder(client, "previous_champion") == "1"
    assert client.get_model_version(NAME, "2").tags["ml_assets.gate.status"] == "failed"

    rollback = build_definitions(tiny_settings(home)).resolve_job_def(names.ROLLBACK_JOB)
    config = {"ops": {"rollback_champion_alias": {"config": {"reason": "weak model in dry run"}}}}
    with instance_at(home) as instance:
        rolled = rollback.execute_in_process(instance=instance, run_config=config)
        latest = instance.get_latest_materialization_event(
            dg.AssetKey(CHURN_CLASSIFIER.champion_key)
        )
    assert holder(client, "champion") == "1" and holder(client, "previous_champion") is None
    assert client.get_model_version(NAME, "1").tags["ml_assets.audit.restored.reason"] == (
        "weak model in dry run"
    )
    assert client.get_model_version(NAME, "2").tags[
        "ml_assets.audit.rolled_back.dagster_run_id"
    ] == (rolled.run_id)
    assert latest.asset_materialization.metadata["champion_version"].value == "1"  # shown in the UI

    with instance_at(home) as instance:
        again = rollback.execute_in_process(instance=instance, raise_on_error=False)
    assert not again.success
    assert step_failure(again, "rollback_champion_alias").startswith(
        f"Nothing to roll back to: no version of {NAME} has the alias 'previous_champion' "
        "(champion is v1)."
    )


def test_disabled_promotes_unvalidated_and_a_better_model_then_replaces_it(home, resources):
    lakehouse = resources["lakehouse"]
    real = randomize_labels(lakehouse)
    weak = train_and_gate(home, resources, model=RELAXED_MODEL, gate={"mode": "disabled"})
    check = gate_check(weak)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description == "gate disabled: promoted without validation"
    client = client_for(home)
    assert holder(client, "champion") == "2"
    assert client.get_model_version(NAME, "2").tags["ml_assets.gate.status"] == "not_evaluated"

    restore_labels(lakehouse, real)
    better = train_and_gate(home, resources)
    assert better.success
    metadata = materialization_metadata(better, CHAMPION)
    assert metadata["decision"] == "passed every gate check against champion v2"
    assert (metadata["champion_version"], metadata["previous_champion_version"]) == ("3", "2")
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:4]
        for line in metadata["metrics"].splitlines()[2:]
    }
    challenger, champion = (float(v) for v in rows["roc_auc"])
    assert challenger > champion  # better, on the same test set
    assert holder(client, "champion") == "3" and holder(client, "previous_champion") == "2"


def test_every_breach_of_a_configured_gate_is_listed_in_one_error(home, resources):
    gate = {
        "thresholds": [
            {"metric": "roc_auc", "threshold": 0.999},
            {"metric": "brier", "threshold": 0.0001, "greater_is_better": False},
        ],
        "latency_budget_ms": 0.001,
    }
    result = materialize(
        home, resources, [churn_classifier_version, churn_classifier_champion], gate=gate
    )
    message = step_failure(result, GATE_STEP)
    assert f"{NAME} v2 breached 3 gate condition(s), compared with champion v1" in message
    breaches = [line for line in message.splitlines() if line.startswith("  - ")]
    assert [b.split(":")[0] for b in breaches] == [
        "  - roc_auc",
        "  - brier",
        "  - single-row p99 latency (ms)",
    ]
    assert "threshold >= 0.9990" in breaches[0] and "threshold <= 0.001" in breaches[2]
    assert holder(client_for(home), "champion") == "1"
    # the enabled gate's check is recorded failed (ERROR) before the step stops the line
    check = gate_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["breaches"].value == 3 and check.metadata["mode"].value == "enabled"
    assert check.description.startswith("refused: 3 breach(es) against champion v1: roc_auc")


def test_the_gate_needs_a_challenger(home, resources):
    result = materialize(home, resources, [churn_classifier_champion])
    assert step_failure(result, GATE_STEP).startswith(
        f"No version of {NAME} has the alias 'challenger': nothing to evaluate."
    )


def test_a_gate_config_with_an_impossible_threshold_is_refused_before_anything_moves(
    home, resources
):
    gate = {"thresholds": [{"metric": "roc_auc"}]}
    result = materialize(
        home, resources, [churn_classifier_version, churn_classifier_champion], gate=gate
    )
    assert "Threshold on 'roc_auc': it sets neither threshold nor max_regression." in (
        step_failure(result, GATE_STEP)
    )
    assert holder(client_for(home), "challenger") == "2"


def test_champion_alias_consistent_fails_without_a_champion_and_on_a_run_without_metrics(home):
    client = client_for(home)
    client.delete_registered_model_alias(NAME, "champion")
    check = evaluate_checks(home, CHAMPION)[names.CHECK_CHAMPION_CONSISTENT]
    assert not check.passed
    assert check.description.startswith(f"No version of {NAME} has the alias 'champion'")

    with mlflow.start_run() as bare:  # a run that logged a model but no metrics
        info = mlflow.pyfunc.log_model(
            name="model", python_model=_Constant(), pip_requirements=["mlflow"]
        )
    version = client.create_model_version(
        NAME, f"models:/{info.model_id}", bare.info.run_id, model_id=info.model_id
    )
    client.set_registered_model_alias(NAME, "champion", version.version)
    check = evaluate_checks(home, CHAMPION)[names.CHECK_CHAMPION_CONSISTENT]
    assert not check.passed
    assert f"run {bare.info.run_id} lacks the metrics ['test_roc_auc'," in check.description

    client.set_registered_model_alias(NAME, "champion", "1")
    assert evaluate_checks(home, CHAMPION)[names.CHECK_CHAMPION_CONSISTENT].passed


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return pd.Series(0.5, index=model_input.index)


@pytest.fixture(autouse=True)
def _no_active_run():
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()


def test_a_version_without_its_lineage_or_input_example_fails_the_completeness_check(
    ingested, home
):
    _, result = ingested
    passed = {
        c.check_name: c
        for c in run_check_results(result)
        if c.asset_key.to_user_string() == "registry/churn_classifier_version"
    }
    check = passed[names.CHECK_VERSION_COMPLETE]
    assert check.passed, check.description
    assert "input example and all 14 lineage tags present" in check.description
    client = client_for(home)
    client.delete_model_version_tag(NAME, "1", names.TAG_TRAINING_SET_HASH)
    client.set_model_version_tag(NAME, "1", names.TAG_GIT_COMMIT, "unknown (not a git checkout)")
    failed = evaluate_checks(home, "registry/churn_classifier_version")[
        names.CHECK_VERSION_COMPLETE
    ]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert f"lineage tags missing or empty: ['{names.TAG_TRAINING_SET_HASH}']" in (
        failed.description
    )
    assert "the code is not identified" in failed.description
    assert failed.metadata["lineage_tags_missing"].value == [names.TAG_TRAINING_SET_HASH]
