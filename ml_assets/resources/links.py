"""The ``ui_links`` resource: where the Dagster and MLflow UIs are, so metadata links into
MLflow and MLflow entities link back to Dagster (``lib/links.py`` builds the addresses)."""

from __future__ import annotations

from typing import Literal

import dagster as dg

from ml_assets.lib.links import LOCAL_DAGSTER_UI, LOCAL_MLFLOW_UI, DagsterLinks, MlflowLinks


class UiLinks(dg.ConfigurableResource):
    """``mlflow_url``: the MLflow UI (``make mlflow-ui``'s address locally, the workspace URL
    on Databricks; None: no MLflow links, only ids). ``dagster_url``: the Dagster UI."""

    mlflow_url: str | None = LOCAL_MLFLOW_UI
    mlflow_kind: Literal["oss", "databricks"] = "oss"
    dagster_url: str = LOCAL_DAGSTER_UI

    def mlflow(self) -> MlflowLinks | None:
        if self.mlflow_url is None:
            return None
        return MlflowLinks(self.mlflow_url.rstrip("/"), self.mlflow_kind)

    def dagster(self) -> DagsterLinks:
        return DagsterLinks(self.dagster_url.rstrip("/"))
