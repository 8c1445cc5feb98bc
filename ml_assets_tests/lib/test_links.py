"""Links between the UIs: MLflow UI addresses (open source and Databricks) and Dagster's."""

from __future__ import annotations

import pytest

from ml_assets.deployments import DeploymentError, current_settings
from ml_assets.lib.links import DagsterLinks, MlflowLinks, check_base_url


def test_open_source_mlflow_addresses_follow_its_ui_routes():
    links = MlflowLinks("http://127.0.0.1:5000")
    assert links.run("3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    assert links.logged_model("3", "m-1") == "http://127.0.0.1:5000/#/experiments/3/models/m-1"
    assert links.model_version("main.models.churn_classifier", 2) == (
        "http://127.0.0.1:5000/#/models/main.models.churn_classifier/versions/2"
    )
    assert links.artifact("3", "abc", "reports/churn_feature_drift/2026-03-11.html") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc/artifactPath/reports/"
        "churn_feature_drift/2026-03-11.html"
    )


def test_databricks_addresses_use_the_workspace_pages_and_catalog_explorer():
    links = MlflowLinks("https://adb-1.azuredatabricks.net", "databricks")
    assert links.run("3", "abc") == "https://adb-1.azuredatabricks.net/ml/experiments/3/runs/abc"
    assert links.model_version("prod.models.churn_classifier", 4) == (
        "https://adb-1.azuredatabricks.net/explore/data/models/prod/models/churn_classifier/"
        "version/4"
    )


def test_dagster_addresses_and_escaping():
    links = DagsterLinks("http://127.0.0.1:3000")
    assert links.run("r-1") == "http://127.0.0.1:3000/runs/r-1"
    assert links.asset(["models", "churn_classifier"]) == (
        "http://127.0.0.1:3000/assets/models/churn_classifier"
    )
    assert links.asset(["a b", "c/d"]) == "http://127.0.0.1:3000/assets/a%20b/c%2Fd"


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "file:///etc", "127.0.0.1:5000", "http://h/?x=1"]
)
def test_a_base_url_that_is_not_an_http_address_is_refused(url):
    with pytest.raises(ValueError, match="expected the UI's base address"):
        check_base_url(url, "X")
    with pytest.raises(DeploymentError, match="ML_ASSETS_MLFLOW_UI_URL"):
        current_settings({"ML_ASSETS_MLFLOW_UI_URL": url})


def test_the_ui_addresses_are_settings_with_the_make_targets_as_defaults():
    default = current_settings({})
    assert (default.mlflow_ui_url, default.dagster_ui_url) == (
        "http://127.0.0.1:5000",
        "http://127.0.0.1:3000",
    )
    moved = current_settings(
        {
            "ML_ASSETS_MLFLOW_UI_URL": "https://mlflow.example.com/",
            "ML_ASSETS_DAGSTER_UI_URL": "https://dagster.example.com/prod",
        }
    )
    assert moved.mlflow_ui_url == "https://mlflow.example.com"
    assert moved.dagster_ui_url == "https://dagster.example.com/prod"
