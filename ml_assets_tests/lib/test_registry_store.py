"""The registry interface enforces Unity Catalog's rules, locally as on ``databricks-uc``, and
agrees with MLflow's own Unity Catalog code paths where they run offline: three-part names
(``split_uc_model_name``), reserved aliases (MLflow's alias validators, which its SQLite store
also applies), a signature with inputs and outputs (``UcModelRegistryStore``'s registration
check, run on the same model directories), and no stages (the UC store raises on them; nothing
in the project calls them). The Unity Catalog resource opens offline: no socket is opened."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.store._unity_catalog.registry.rest_store import UcModelRegistryStore
from mlflow.types import ColSpec, Schema
from mlflow.utils._unity_catalog_utils import split_uc_model_name

from ml_assets.lib.registry.store import (
    Registry,
    RegistryRuleError,
    check_alias,
    check_model_name,
)
from ml_assets.resources.mlflow import DatabricksMlflow
from ml_assets.resources.registry import UnityCatalogModelRegistry

PACKAGE = Path(__file__).resolve().parents[2] / "ml_assets"


class Half(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return pd.Series(0.5, index=model_input.index)


@pytest.mark.parametrize(
    "name, problem",
    [
        ("churn_classifier", "has 1 part(s)"),
        ("models.churn_classifier", "has 2 part(s)"),
        ("a.b.c.d", "has 4 part(s)"),
        ("main..churn", "has 3 part(s)"),  # an empty part: MLflow refuses it too
        ("Main.models.churn", "['Main'] must be lower-case identifiers"),
        ("main.my models.churn", "['my models'] must be lower-case identifiers"),
        ("main.models.churn/v2", "['churn/v2'] must be lower-case identifiers"),
    ],
)
def test_a_model_name_unity_catalog_would_refuse_is_refused_with_the_reason(name, problem):
    with pytest.raises(RegistryRuleError, match=re.escape(problem)):
        check_model_name(name)


@pytest.mark.parametrize("name", ["churn_classifier", "models.churn", "a.b.c.d", "main..churn"])
def test_mlflow_refuses_the_same_part_counts(name):
    with pytest.raises(MlflowException, match="must have three levels"):
        split_uc_model_name(name)


def test_a_three_part_name_passes_and_the_catalog_is_the_deployments():
    assert check_model_name("main.models.churn_classifier") == (
        "main",
        "models",
        "churn_classifier",
    )
    local = Registry("sqlite:///unused.db", "sqlite:///unused.db")
    assert local.full_name("main.models.churn_classifier") == "main.models.churn_classifier"
    prod = Registry("databricks", "databricks-uc", catalog="prod")
    assert prod.full_name("main.models.churn_classifier") == "prod.models.churn_classifier"
    assert prod.full_name("prod.models.churn_classifier") == "prod.models.churn_classifier"


@pytest.mark.parametrize(
    "alias, message",
    [
        ("latest", "'latest' alias name (case insensitive) is reserved"),
        ("LATEST", "'latest' alias name (case insensitive) is reserved"),
        ("v3", "Version alias name 'v3' is reserved"),
        ("V12", "Version alias name 'V12' is reserved"),
        ("my alias", "Invalid alias name"),
        ("", "cannot be empty"),
    ],
)
def test_reserved_and_malformed_aliases_are_refused(alias, message):
    with pytest.raises(RegistryRuleError, match=re.escape(message)):
        check_alias(alias)


def test_the_project_aliases_are_valid():
    for alias in ("champion", "challenger", "previous_champion", "v2_candidate"):
        assert check_alias(alias) == alias


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict[str, object]:
    """A local registry and three logged models: a full signature, inputs only, none."""
    root = tmp_path_factory.mktemp("uc_rules")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.MlflowClient(uri).create_experiment("rules", (root / "a").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    signatures = {
        "full": infer_signature(frame, [0.5, 0.5]),
        "inputs_only": ModelSignature(inputs=Schema([ColSpec("double", "x")])),
        "none": None,
    }
    logged = {}
    with mlflow.start_run() as run:
        for kind, signature in signatures.items():
            info = mlflow.pyfunc.log_model(
                name=kind, python_model=Half(), signature=signature, pip_requirements=["mlflow"]
            )
            logged[kind] = info.model_id
    return {"registry": Registry(uri, uri), "models": logged, "run_id": run.info.run_id}


@pytest.mark.parametrize(
    "kind, message", [("none", "has no signature"), ("inputs_only", "inputs only, no outputs")]
)
def test_a_model_without_a_full_signature_is_not_registered(store, kind, message):
    registry: Registry = store["registry"]
    with pytest.raises(RegistryRuleError, match=message):
        registry.register(
            "main.models.unsigned",
            store["models"][kind],
            store["run_id"],
            description="d",
            tags={},
            model_description="m",
        )
    # refused before anything was created
    assert registry.client.search_registered_models("name = 'main.models.unsigned'") == []


def test_mlflow_unity_catalog_store_judges_the_same_models_the_same_way(store):
    """MLflow's own registration check for ``databricks-uc``, on the logged model directories."""
    verdicts = {}
    for kind, model_id in store["models"].items():
        local = mlflow.artifacts.download_artifacts(f"models:/{model_id}")
        try:
            UcModelRegistryStore._validate_model_signature(None, local)
            verdicts[kind] = "accepted"
        except MlflowException:
            verdicts[kind] = "refused"
    assert verdicts == {"full": "accepted", "inputs_only": "refused", "none": "refused"}
    version = store["registry"].register(
        "main.models.signed",
        store["models"]["full"],
        store["run_id"],
        description="d",
        tags={},
        model_description="m",
    )
    assert version.status == "READY"
    assert store["registry"].signature("main.models.signed", version.version).outputs is not None


def test_the_local_store_refuses_a_reserved_alias_too(store):
    """Not only our check: MLflow's SQLite registry applies the same reservation."""
    registry: Registry = store["registry"]
    with pytest.raises(MlflowException, match="reserved"):
        registry.client.set_registered_model_alias("main.models.signed", "latest", "1")


def test_stages_are_never_used_and_mlflow_uc_refuses_them():
    stage_calls = re.compile(
        r"\.(transition_model_version_stage|get_latest_versions)\(|\.current_stage\b"
    )
    users = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if stage_calls.search(p.read_text())
    ]
    assert users == []
    uc = UcModelRegistryStore(store_uri="databricks-uc", tracking_uri="databricks")
    with pytest.raises(MlflowException, match="unsupported for models in the Unity Catalog"):
        uc.get_latest_versions("main.models.churn_classifier")
    with pytest.raises(MlflowException, match="unsupported for models in the Unity Catalog"):
        uc.transition_model_version_stage("main.models.churn_classifier", "1", "Production", False)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_the_unity_catalog_registry_opens_offline_and_checks_before_any_call(no_network):
    resource = UnityCatalogModelRegistry(
        tracking=DatabricksMlflow(profile="prod"), catalog="ml_prod"
    )
    registry = resource.open()
    assert (registry.tracking_uri, registry.registry_uri) == (
        "databricks://prod",
        "databricks-uc://prod",
    )
    assert registry.full_name("main.models.churn_classifier") == "ml_prod.models.churn_classifier"
    with pytest.raises(RegistryRuleError, match="reserved"):
        registry.by_alias("main.models.churn_classifier", "latest")
    with pytest.raises(RegistryRuleError, match="has 1 part"):
        registry.set_alias("churn_classifier", "champion", "1")
    assert no_network == []


def test_a_catalog_with_bad_characters_is_refused_when_the_resource_is_made():
    with pytest.raises(ValueError, match="must be lower-case identifiers"):
        UnityCatalogModelRegistry(tracking=DatabricksMlflow(), catalog="ML-Prod")
