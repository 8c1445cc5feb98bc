"""Links a person clicks: from Dagster into the MLflow UI, and from MLflow back into Dagster.

``MlflowLinks`` builds MLflow UI addresses for runs, logged models, registered versions and
artifacts, for an open-source MLflow server (``mlflow ui``: hash routes such as
``#/experiments/1/runs/<id>``) or a Databricks workspace (``/ml/experiments/...``, registered
models in Catalog Explorer). ``DagsterLinks`` builds Dagster UI addresses for runs and assets.
The base URLs are deployment settings (``ML_ASSETS_MLFLOW_UI_URL``, ``ML_ASSETS_DAGSTER_UI_URL``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit

LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"  # make mlflow-ui
LOCAL_DAGSTER_UI = "http://127.0.0.1:3000"  # make ui


def check_base_url(url: str, setting: str) -> str:
    """An http(s) URL without a query or fragment; returned without its trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            f"{setting}={url!r}; expected the UI's base address, e.g. http://127.0.0.1:5000 "
            "(http or https, no query or fragment)."
        )
    return url.rstrip("/")


def _segment(value: object) -> str:
    return quote(str(value), safe="")


@dataclass(frozen=True)
class MlflowLinks:
    base_url: str
    kind: Literal["oss", "databricks"] = "oss"

    def _page(self, path: str) -> str:
        # the open-source UI routes after a '#'; a Databricks workspace uses real paths
        return f"{self.base_url}/#{path}" if self.kind == "oss" else f"{self.base_url}/ml{path}"

    def experiment(self, experiment_id: str) -> str:
        return self._page(f"/experiments/{_segment(experiment_id)}")

    def run(self, experiment_id: str, run_id: str) -> str:
        return self._page(f"/experiments/{_segment(experiment_id)}/runs/{_segment(run_id)}")

    def logged_model(self, experiment_id: str, model_id: str) -> str:
        return self._page(f"/experiments/{_segment(experiment_id)}/models/{_segment(model_id)}")

    def artifact(self, experiment_id: str, run_id: str, path: str) -> str:
        """The run's artifact browser opened at ``path`` (HTML artifacts render there)."""
        where = "/".join(_segment(p) for p in path.split("/"))
        if self.kind == "oss":
            return self._page(
                f"/experiments/{_segment(experiment_id)}/runs/{_segment(run_id)}"
                f"/artifactPath/{where}"
            )
        return self.run(experiment_id, run_id) + f"/artifacts/{where}"

    def model_version(self, name: str, version: str | int) -> str:
        if self.kind == "oss":
            return f"{self.base_url}/#/models/{_segment(name)}/versions/{_segment(version)}"
        path = "/".join(_segment(p) for p in name.split("."))  # catalog/schema/model
        return f"{self.base_url}/explore/data/models/{path}/version/{_segment(version)}"


@dataclass(frozen=True)
class DagsterLinks:
    base_url: str

    def run(self, run_id: str) -> str:
        return f"{self.base_url}/runs/{_segment(run_id)}"

    def asset(self, key_path: Sequence[str]) -> str:
        return f"{self.base_url}/assets/" + "/".join(_segment(p) for p in key_path)
