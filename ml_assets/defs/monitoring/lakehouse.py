"""``monitoring/<stem>_predictions_lakehouse_monitor`` for every declared model (the databricks
deployment): Databricks Lakehouse Monitoring's inference-log monitor on the model's batch
predictions table, created or updated from its declaration
(``lib.monitoring.monitor.DriftMonitor.lakehouse_monitor``) and refreshed after each batch.
It complements the drift assets, which run everywhere: Lakehouse Monitoring adds its profile
and drift metrics tables and a dashboard in the workspace.
"""

import dagster as dg

from ml_assets import names
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.monitoring.monitor import DriftMonitor
from ml_assets.resources.lakehouse_monitoring import HEALTHY, DatabricksLakehouseMonitoring


def build_lakehouse_monitor(model: ModelDeclaration) -> dg.AssetsDefinition:
    key = dg.AssetKey([names.MONITORING, f"{model.stem}_predictions_lakehouse_monitor"])
    declaration = DriftMonitor(model).lakehouse_monitor

    @dg.asset(
        key=key,
        group_name=names.MONITORING,
        deps=[dg.AssetKey(model.predictions_key)],
        kinds={"databricks"},
        check_specs=[
            dg.AssetCheckSpec(
                names.CHECK_LAKEHOUSE_MONITOR_HEALTHY,
                asset=key,
                description="Lakehouse Monitoring reports the monitor active or pending, not "
                "failed or in error (WARN: the metrics tables and dashboard are not being "
                "kept).",
            )
        ],
        description=f"Databricks Lakehouse Monitoring inference-log monitor on {model.name}'s "
        "batch predictions: created or updated from its declaration, refreshed after each "
        "batch.",
    )
    def _monitor(
        context: dg.AssetExecutionContext, lakehouse_monitoring: DatabricksLakehouseMonitoring
    ):
        state = lakehouse_monitoring.ensure(declaration)
        context.log.info(
            "monitor on %s %s (version %s, %s); refresh %s %s",
            state.table,
            state.action,
            state.monitor_version,
            state.status,
            state.refresh_id,
            state.refresh_state,
        )
        links = (
            {"dashboard": dg.MetadataValue.url(state.dashboard_url)} if state.dashboard_url else {}
        )
        yield dg.MaterializeResult(
            metadata={
                "table": state.table,
                "action": state.action,
                "status": state.status,
                "monitor_version": state.monitor_version or "",
                "profile_metrics_table": state.profile_metrics_table or "",
                "drift_metrics_table": state.drift_metrics_table or "",
                "refresh_id": state.refresh_id or 0,
                "refresh_state": state.refresh_state or "not requested",
                **links,
            }
        )
        yield dg.AssetCheckResult(
            check_name=names.CHECK_LAKEHOUSE_MONITOR_HEALTHY,
            passed=state.healthy,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"monitor on {state.table}: {state.status} (healthy: {', '.join(HEALTHY)})",
            metadata={"status": state.status},
        )

    return _monitor
