"""Partitions shared by the stages: one per day of the source's calendar (``Settings.calendar``:
``ML_ASSETS_PARTITIONS_START`` for your own source, else the demo source's days)."""

from __future__ import annotations

import datetime as dt

import dagster as dg


def daily_partitions(start: dt.date, end: dt.date | None = None) -> dg.DailyPartitionsDefinition:
    """One partition per UTC day from ``start`` to ``end`` (inclusive; None: up to today)."""
    return dg.DailyPartitionsDefinition(
        start_date=start.isoformat(),
        end_date=None if end is None else (end + dt.timedelta(days=1)).isoformat(),  # exclusive
        timezone="UTC",
    )


def partition_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """First and last day (inclusive) of the partitions this run materializes."""
    window = context.partition_time_window
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()
