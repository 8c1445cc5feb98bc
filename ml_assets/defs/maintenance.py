"""Table maintenance: ``VACUUM`` every Delta table of the graph, weekly and on demand.

A write killed before it commits leaves parquet files no version references (hundreds of MB
after a few killed appends); versions replaced by later commits keep theirs until vacuumed.
The job deletes both, past a retention (Delta's default, 7 days), and records what each table
lost as an observation on the table's asset, so the UI shows it beside the materializations.
"""

import datetime as dt
import shutil

import dagster as dg
from pydantic import Field

from ml_assets import names
from ml_assets.resources.lakehouse import DEFAULT_RETENTION_HOURS, Lakehouse


class VacuumConfig(dg.Config):
    retention_hours: int = Field(
        default=DEFAULT_RETENTION_HOURS,
        ge=0,
        description="Keep every file a version of the last N hours needs (default 7 days).",
    )
    allow_short_retention: bool = Field(
        default=False,
        description="Allow a retention below 7 days: only when nothing reads older versions "
        "and no write is running (a running write's files are not referenced yet).",
    )


def table_assets(assets: list[dg.AssetsDefinition]) -> dict[dg.AssetKey, str]:
    """The assets that are Delta tables (their spec names one), by key."""
    return {
        spec.key: str(spec.metadata["dagster/table_name"])
        for asset in assets
        for spec in asset.specs
        if "dagster/table_name" in spec.metadata
    }


def build_maintenance(
    tables: dict[dg.AssetKey, str],
) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    @dg.op(name="vacuum_tables", out=dg.Out(dg.Nothing))
    def vacuum_tables(
        context: dg.OpExecutionContext, config: VacuumConfig, lakehouse: Lakehouse
    ) -> None:
        """Vacuum each table that exists; report files and bytes freed per table."""
        total_files = total_bytes = 0
        for key, table in sorted(tables.items(), key=lambda kv: kv[1]):
            if not lakehouse.exists(table):
                continue
            result = lakehouse.vacuum(
                table, config.retention_hours, allow_short_retention=config.allow_short_retention
            )
            total_files += result.files_deleted
            total_bytes += result.bytes_freed
            context.log_event(
                dg.AssetObservation(
                    asset_key=key,
                    metadata={
                        "vacuum_files_deleted": result.files_deleted,
                        "vacuum_bytes_freed": result.bytes_freed,
                        "vacuum_retention_hours": config.retention_hours,
                        "delta_version": result.version,
                    },
                )
            )
        retention = dt.timedelta(hours=config.retention_hours)
        for stale in lakehouse.stale_checkpoints(older_than=retention):
            shutil.rmtree(stale, ignore_errors=True)
            context.log.info("removed checkpoint left by a killed run: %s", stale)
        context.log.info(
            "vacuumed %d tables: %d files, %.1f MB freed",
            len(tables),
            total_files,
            total_bytes / 1e6,
        )

    @dg.job(name=names.TABLE_MAINTENANCE_JOB, description=__doc__.split("\n\n")[0])
    def table_maintenance_job() -> None:
        vacuum_tables()

    schedule = dg.ScheduleDefinition(
        name="weekly_table_maintenance_schedule",
        job=table_maintenance_job,
        cron_schedule="0 4 * * 0",  # Sunday 04:00, outside the daily and weekly runs
        execution_timezone="UTC",
    )
    return table_maintenance_job, schedule
