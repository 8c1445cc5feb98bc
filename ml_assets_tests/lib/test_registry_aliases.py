"""The alias flow on a real MLflow registry (SQLite under tmp_path): registration with the
challenger alias, promotion with previous_champion and audit tags, refusal, rollback, and
what makes a champion inconsistent."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from ml_assets.lib.registry import aliases
from ml_assets.lib.registry.store import Registry, RegistryError

NAME = "main.models.example"


class Half(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return pd.Series(0.5, index=model_input.index)


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> tuple[Registry, str, str]:
    """One logged model (with test metrics on its run) to register versions from."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # artifacts under tmp (the default is ./mlruns in the working directory)
    experiment = MlflowClient(uri).create_experiment("aliases", (root / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Half(),
            signature=infer_signature(frame, [0.5, 0.5]),
            input_example=frame,
            pip_requirements=["mlflow"],  # no inference subprocess
        )
        mlflow.log_metrics({m: 0.5 for m in aliases.REQUIRED_RUN_METRICS})
    return Registry(uri, uri), info.model_id, run.info.run_id


@pytest.fixture
def registry(logged) -> Registry:
    registry = logged[0]
    for model in registry.client.search_registered_models():
        registry.client.delete_registered_model(model.name)
    return registry


@pytest.fixture
def client(registry) -> MlflowClient:
    """The registry's MLflow client, to observe what the alias flow did."""
    return registry.client


def register(logged, tags=None):
    registry, model_id, run_id = logged
    return aliases.register_version(
        registry,
        NAME,
        model_id,
        run_id,
        description="a version",
        tags=tags or {"ml_assets.training_set_version": "3"},
        model_description="the model",
    )


def champion_and_challenger(registry, logged) -> None:
    """v1 promoted (champion), v2 registered (challenger)."""
    register(logged)
    aliases.promote(registry, NAME, "1", reason="first", dagster_run_id="run-a")
    register(logged)


def holder(registry, alias):
    found = registry.by_alias(NAME, alias)
    return None if found is None else str(found.version)


def test_a_registered_version_is_ready_tagged_described_and_the_challenger(
    registry, client, logged
):
    version = register(logged)
    assert (str(version.version), version.status, version.aliases) == ("1", "READY", ["challenger"])
    assert version.tags == {"ml_assets.training_set_version": "3"}
    assert version.description == "a version"
    assert client.get_registered_model(NAME).description == "the model"
    assert holder(registry, "champion") is None  # a missing alias is None, not an error
    assert registry.by_alias("main.models.nothing", "champion") is None


def test_promotion_moves_champion_keeps_previous_and_clears_challenger(registry, client, logged):
    register(logged)
    first = aliases.promote(registry, NAME, "1", reason="first", dagster_run_id="run-a")
    assert (first.champion, first.replaced) == ("1", None)
    register(logged)
    second = aliases.promote(registry, NAME, "2", reason="better", dagster_run_id="run-b")
    assert (second.champion, second.replaced) == ("2", "1")
    assert holder(registry, "champion") == "2"
    assert holder(registry, "previous_champion") == "1"
    assert holder(registry, "challenger") is None
    tags = client.get_model_version(NAME, "2").tags
    assert tags["ml_assets.audit.promoted.reason"] == "better"
    assert tags["ml_assets.audit.promoted.dagster_run_id"] == "run-b"
    demoted = client.get_model_version(NAME, "1").tags
    assert demoted["ml_assets.audit.demoted.reason"] == "replaced by v2"


def test_a_refused_challenger_loses_the_alias_and_the_champion_stays(registry, client, logged):
    champion_and_challenger(registry, logged)
    aliases.refuse(registry, NAME, "2", reason="refused: 2 breaches", dagster_run_id="run-b")
    assert holder(registry, "champion") == "1" and holder(registry, "challenger") is None
    tags = client.get_model_version(NAME, "2").tags
    assert tags["ml_assets.audit.refused.reason"] == "refused: 2 breaches"


def test_rollback_restores_the_previous_champion_once(registry, client, logged):
    champion_and_challenger(registry, logged)
    aliases.promote(registry, NAME, "2", reason="second", dagster_run_id="run-b")
    move = aliases.rollback(registry, NAME, reason="bad canary", dagster_run_id="run-c")
    assert (move.champion, move.replaced) == ("1", "2")
    assert holder(registry, "champion") == "1" and holder(registry, "previous_champion") is None
    assert client.get_model_version(NAME, "2").tags["ml_assets.audit.rolled_back.reason"] == (
        "bad canary"
    )
    assert client.get_model_version(NAME, "1").tags["ml_assets.audit.restored.dagster_run_id"] == (
        "run-c"
    )
    with pytest.raises(RegistryError) as error:
        aliases.rollback(registry, NAME, reason="again", dagster_run_id="run-d")
    assert str(error.value).startswith(
        f"Nothing to roll back to: no version of {NAME} has the alias 'previous_champion' "
        "(champion is v1)."
    )


def test_champion_problems_name_what_is_inconsistent(registry, client, logged):
    _, problems = aliases.champion_problems(registry, NAME)
    assert problems == [
        f"No version of {NAME} has the alias 'champion': materialize "
        "registry/churn_classifier_champion to promote the challenger."
    ]
    register(logged)
    aliases.promote(registry, NAME, "1", reason="first", dagster_run_id="run-a")
    champion, problems = aliases.champion_problems(registry, NAME)
    assert str(champion.version) == "1" and problems == []
    _, problems = aliases.champion_problems(registry, NAME, ("test_roc_auc", "test_net_value"))
    assert problems == [f"run {logged[2]} lacks the metrics ['test_net_value']"]
    client.delete_run(logged[2])
    try:
        _, problems = aliases.champion_problems(registry, NAME)
    finally:
        client.restore_run(logged[2])
    assert problems == [f"run {logged[2]} is deleted"]
