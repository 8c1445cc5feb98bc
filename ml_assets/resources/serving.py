"""Where endpoint configs go: JSON files under ``$ML_ASSETS_HOME/serving/`` locally, read by
the local gateway. (On Databricks the same body goes to the serving-endpoints API through
databricks-sdk.)"""

from __future__ import annotations

import json
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import dagster as dg

from ml_assets.lib.serving.endpoint import Endpoint


class EndpointConfigs(dg.ConfigurableResource, ABC):
    @abstractmethod
    def write(self, endpoint: Endpoint) -> str:
        """Deploy the config; returns where it went."""

    @abstractmethod
    def read(self, name: str) -> Endpoint:
        """The deployed config (validated: unknown keys and bad types raise)."""


class LocalEndpointConfigs(EndpointConfigs):
    directory: str

    def path(self, name: str) -> Path:
        return Path(self.directory) / f"{name}.json"

    def write(self, endpoint: Endpoint) -> str:
        """Atomically (write a temporary file, then rename): the gateway, which watches the
        file, never reads half a config."""
        target = self.path(endpoint.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=target.parent, suffix=".tmp", delete=False
        ) as handle:
            json.dump(endpoint.model_dump(), handle, indent=2)
            handle.write("\n")
        os.replace(handle.name, target)
        return str(target)

    def read(self, name: str) -> Endpoint:
        return Endpoint.model_validate_json(self.path(name).read_text())
