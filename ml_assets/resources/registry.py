"""The ``model_registry`` resource: registered models, local or in Unity Catalog.

Both implementations open the same ``lib.registry.store.Registry`` (Unity Catalog's rules on
both); they differ in where it points. ``LocalModelRegistry`` uses the tracking store's SQLite
database; ``UnityCatalogModelRegistry`` uses ``databricks-uc`` (credentials from
``DATABRICKS_HOST``/``DATABRICKS_TOKEN`` or a config profile, read by MLflow on the first call,
never at definitions load) and puts the declared models in the deployment's catalog.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import dagster as dg
from pydantic import Field, field_validator

from ml_assets.lib.registry.store import UNITY_CATALOG_REGISTRY, Registry, check_model_name
from ml_assets.resources.mlflow import MlflowTracking


class ModelRegistry(dg.ConfigurableResource, ABC):
    tracking: MlflowTracking

    @abstractmethod
    def registry_uri(self) -> str: ...

    def catalog_override(self) -> str | None:
        return None

    def open(self) -> Registry:
        """The registry; no client is built and nothing is contacted until the first call."""
        return Registry(
            tracking_uri=self.tracking.tracking_uri(),
            registry_uri=self.registry_uri(),
            catalog=self.catalog_override(),
        )


class LocalModelRegistry(ModelRegistry):
    """The MLflow registry in the tracking store (SQLite under ``ML_ASSETS_HOME``)."""

    def registry_uri(self) -> str:
        return self.tracking.tracking_uri()


class UnityCatalogModelRegistry(ModelRegistry):
    """MLflow's Unity Catalog registry: models are ``<catalog>.<schema>.<model>``."""

    catalog: str = Field(description="The Unity Catalog catalog that holds the models.")

    @field_validator("catalog")
    @classmethod
    def _catalog_is_identifier(cls, value: str) -> str:
        check_model_name(f"{value}.schema.model")
        return value

    def registry_uri(self) -> str:
        """``databricks-uc``, with the tracking's profile when it tracks to a workspace
        through one (``databricks://prod`` -> ``databricks-uc://prod``)."""
        tracking = self.tracking.tracking_uri()
        profile = tracking.partition("://")[2] if tracking.startswith("databricks://") else ""
        return UNITY_CATALOG_REGISTRY + (f"://{profile}" if profile else "")

    def catalog_override(self) -> str | None:
        return self.catalog
