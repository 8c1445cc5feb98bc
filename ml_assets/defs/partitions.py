"""Partitions shared by the stages: one per day of the source calendar."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ml_assets.lib.source import SourceConfig


def daily_partitions(source: SourceConfig) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(
        start_date=source.start_date.isoformat(),
        end_date=(source.end_date + dt.timedelta(days=1)).isoformat(),  # exclusive
        timezone="UTC",
    )


def partition_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """First and last day (inclusive) of the partitions this run materializes."""
    window = context.partition_time_window
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()
