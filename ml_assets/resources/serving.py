"""The ``endpoint_deployer`` resource: where an endpoint config goes, and reading it back.

``LocalEndpointDeployer`` writes ``$ML_ASSETS_HOME/serving/<endpoint>.json``, which the local
gateway watches. ``DatabricksEndpointDeployer`` deploys the same body to Databricks Model Serving
through ``databricks-sdk``: ``create_and_wait`` for a new endpoint, ``update_config_and_wait``
for an existing one (both wait until ``state.config_update`` is ``NOT_UPDATING``, and raise if
the update failed). It works against any host that speaks the serving-endpoints API, the
local gateway included (``make serve``), which is how it is tested.

The workspace client is built on first use, never at definitions load (the SDK probes the
host when its config is built), with short HTTP and retry timeouts so that a wrong host fails
in seconds, not minutes.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from ml_assets.lib.files import write_atomically
from ml_assets.lib.serving.endpoint import AutoCaptureConfig, Endpoint
from ml_assets.resources.databricks import calling_workspace, workspace_client

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient


@dataclass(frozen=True)
class Deployed:
    endpoint: str
    where: str  # a file path or an endpoint URL
    action: str  # "written", "created" or "updated"
    config_version: int | None = None


class EndpointDeployer(dg.ConfigurableResource, ABC):
    @abstractmethod
    def deploy(self, endpoint: Endpoint) -> Deployed:
        """Deploy the config; returns where it went once it is being served."""

    @abstractmethod
    def deployed(self, name: str) -> Endpoint:
        """The deployed config (validated: unknown keys and bad types raise ``ValueError``;
        an endpoint that does not exist raises ``FileNotFoundError``)."""

    def inference_log_dir(self, name: str) -> Path | None:
        """Where the endpoint's server writes its inference-log files; None when the serving
        platform writes the inference table itself (Databricks' ``auto_capture_config``)."""
        return None


class LocalEndpointDeployer(EndpointDeployer):
    directory: str

    def path(self, name: str) -> Path:
        return Path(self.directory) / f"{name}.json"

    def deploy(self, endpoint: Endpoint) -> Deployed:
        """Atomically (write a temporary file, then rename): the gateway, which watches the
        file, never reads half a config."""
        target = self.path(endpoint.name)
        write_atomically(target, json.dumps(endpoint.body(), indent=2) + "\n")
        return Deployed(endpoint.name, str(target), "written")

    def deployed(self, name: str) -> Endpoint:
        return Endpoint.model_validate_json(self.path(name).read_text())

    def inference_log_dir(self, name: str) -> Path:
        """The local gateway's inference-log files: ``<directory>/inference_logs/<name>``."""
        return Path(self.directory) / "inference_logs" / name


class DatabricksEndpointDeployer(EndpointDeployer):
    """Model Serving in a workspace. Credentials: ``host`` and ``token`` (bind the token as
    ``dg.EnvVar("DATABRICKS_TOKEN")`` so that Dagster stores the variable's name, never the
    value), or a config ``profile``, or the SDK's own environment."""

    host: str | None = Field(None, description="https://<workspace>; default: the SDK's")
    token: str | None = Field(None, description="bind as dg.EnvVar('DATABRICKS_TOKEN')")
    profile: str | None = Field(None, description="a ~/.databrickscfg profile")
    inference_table_catalog: str | None = Field(
        None, description="with inference_table_schema: log requests to inference tables"
    )
    inference_table_schema: str | None = None
    timeout_minutes: float = Field(20.0, gt=0, description="wait for the config update")
    http_timeout_seconds: int = Field(30, ge=1)
    retry_timeout_seconds: int = Field(60, ge=1)

    def _calling(self):
        return calling_workspace(
            self.host,
            self.profile,
            self.retry_timeout_seconds,
            needs="a token that may manage serving endpoints",
            setting="the endpoint deployer's host",
        )

    def workspace(self) -> WorkspaceClient:
        return workspace_client(
            self.host,
            self.token,
            self.profile,
            http_timeout_seconds=self.http_timeout_seconds,
            retry_timeout_seconds=self.retry_timeout_seconds,
        )

    def with_inference_tables(self, endpoint: Endpoint) -> Endpoint:
        if self.inference_table_catalog is None or self.inference_table_schema is None:
            return endpoint
        capture = AutoCaptureConfig(
            catalog_name=self.inference_table_catalog,
            schema_name=self.inference_table_schema,
            table_name_prefix=endpoint.name.replace("-", "_").lower(),
        )
        config = endpoint.config.model_copy(update={"auto_capture_config": capture})
        return endpoint.model_copy(update={"config": config})

    def deploy(self, endpoint: Endpoint) -> Deployed:
        from databricks.sdk.errors import NotFound
        from databricks.sdk.service.serving import EndpointCoreConfigInput

        endpoint = self.with_inference_tables(endpoint)
        config = EndpointCoreConfigInput.from_dict(endpoint.body()["config"])
        w = self.workspace()
        timeout = timedelta(minutes=self.timeout_minutes)
        try:
            with self._calling():  # the first call: where a wrong host or token shows
                current = w.serving_endpoints.get(endpoint.name)
        except NotFound:
            detailed = w.serving_endpoints.create_and_wait(
                endpoint.name, config=config, timeout=timeout
            )
            action = "created"
        else:
            # inference tables cannot be reconfigured once enabled: send them only to enable
            capturing = current.config is not None and current.config.auto_capture_config
            enabled = bool(capturing and capturing.enabled)
            detailed = w.serving_endpoints.update_config_and_wait(
                endpoint.name,
                served_entities=config.served_entities,
                traffic_config=config.traffic_config,
                auto_capture_config=None if enabled else config.auto_capture_config,
                timeout=timeout,
            )
            action = "updated"
        where = f"{w.config.host.rstrip('/')}/serving-endpoints/{endpoint.name}/invocations"
        version = detailed.config.config_version if detailed.config else None
        return Deployed(endpoint.name, where, action, version)

    def deployed(self, name: str) -> Endpoint:
        from databricks.sdk.errors import NotFound

        try:
            with self._calling():
                detailed = self.workspace().serving_endpoints.get(name)
        except NotFound as exc:
            raise FileNotFoundError(f"No serving endpoint {name!r}: {exc}") from exc
        config = detailed.config.as_dict() if detailed.config else {}
        keep = {"name", "entity_name", "entity_version", "workload_size", "scale_to_zero_enabled"}
        body = {
            "name": detailed.name,
            "config": {
                "served_entities": [
                    {k: v for k, v in entity.items() if k in keep}
                    for entity in config.get("served_entities", [])
                ],
                # a workspace may name a route's entity in both fields: keep one
                "traffic_config": {
                    "routes": [
                        {
                            "served_entity_name": r.get("served_entity_name")
                            or r.get("served_model_name"),
                            "traffic_percentage": r.get("traffic_percentage", 0),
                        }
                        for r in config.get("traffic_config", {}).get("routes", [])
                    ]
                },
            },
        }
        return Endpoint.model_validate(body)
