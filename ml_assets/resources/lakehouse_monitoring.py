"""The ``lakehouse_monitoring`` resource (the databricks deployment only): Databricks Lakehouse
Monitoring for a declared inference-log monitor, through ``databricks-sdk``'s Quality Monitors
API. ``ensure`` creates the monitor if the table has none, updates it when its inference-log
settings differ from the declaration, leaves it alone otherwise, and then asks for a refresh
so the metrics cover the newest batch. The workspace client is built on first use.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from ml_assets.lib.monitoring.lakehouse_monitor import InferenceLogMonitor
from ml_assets.resources.databricks import calling_workspace, workspace_client

HEALTHY = ("MONITOR_STATUS_ACTIVE", "MONITOR_STATUS_PENDING")


@dataclass(frozen=True)
class MonitorState:
    table: str
    action: str  # created, updated or unchanged
    status: str  # MonitorInfoStatus, e.g. MONITOR_STATUS_ACTIVE
    monitor_version: str | None
    profile_metrics_table: str | None
    drift_metrics_table: str | None
    dashboard_url: str | None
    refresh_id: int | None
    refresh_state: str | None

    @property
    def healthy(self) -> bool:
        return self.status in HEALTHY


class DatabricksLakehouseMonitoring(dg.ConfigurableResource):
    host: str | None = Field(None, description="https://<workspace>; default: the SDK's")
    token: str | None = Field(None, description="bind as dg.EnvVar('DATABRICKS_TOKEN')")
    profile: str | None = Field(None, description="a ~/.databrickscfg profile")
    catalog: str = Field(description="the catalog of the monitored tables")
    output_schema: str = Field(description="catalog.schema for the metrics tables")
    assets_dir: str = Field(description="workspace folder for the dashboard")
    refresh: bool = Field(True, description="refresh the metrics after each ensure")
    http_timeout_seconds: int = Field(30, ge=1)
    retry_timeout_seconds: int = Field(60, ge=1)

    def ensure(self, monitor: InferenceLogMonitor) -> MonitorState:
        from databricks.sdk.errors import NotFound
        from databricks.sdk.service.catalog import MonitorInferenceLog

        body = monitor.body(output_schema=self.output_schema, assets_dir=self.assets_dir)
        inference_log = MonitorInferenceLog.from_dict(body["inference_log"])
        slicing = body.get("slicing_exprs")
        table = monitor.full_name(self.catalog)
        w = workspace_client(
            self.host,
            self.token,
            self.profile,
            http_timeout_seconds=self.http_timeout_seconds,
            retry_timeout_seconds=self.retry_timeout_seconds,
        )
        try:
            with calling_workspace(
                self.host,
                self.profile,
                self.retry_timeout_seconds,
                needs=f"a token that may read {table} and manage its monitor",
                setting="the lakehouse monitoring resource's host",
            ):
                current = w.quality_monitors.get(table_name=table)
        except NotFound:
            # keywords only: the positional order differs between SDK releases
            info = w.quality_monitors.create(
                table_name=table,
                assets_dir=self.assets_dir,
                output_schema_name=self.output_schema,
                inference_log=inference_log,
                slicing_exprs=slicing,  # type: ignore[arg-type]
            )
            action = "created"
        else:
            same = current.inference_log == inference_log and (
                (current.slicing_exprs or None) == slicing
            )
            if same:
                info, action = current, "unchanged"
            else:
                info = w.quality_monitors.update(
                    table_name=table,
                    output_schema_name=self.output_schema,
                    inference_log=inference_log,
                    slicing_exprs=slicing,  # type: ignore[arg-type]
                )
                action = "updated"
        refresh = w.quality_monitors.run_refresh(table_name=table) if self.refresh else None
        dashboard = (
            f"{w.config.host.rstrip('/')}/sql/dashboardsv3/{info.dashboard_id}"
            if info.dashboard_id
            else None
        )
        return MonitorState(
            table=table,
            action=action,
            status=info.status.value if info.status else "UNKNOWN",
            monitor_version=None if info.monitor_version is None else str(info.monitor_version),
            profile_metrics_table=info.profile_metrics_table_name,
            drift_metrics_table=info.drift_metrics_table_name,
            dashboard_url=dashboard,
            refresh_id=refresh.refresh_id if refresh else None,
            refresh_state=refresh.state.value if refresh and refresh.state else None,
        )
