"""Partitions shared by the stages: one per day of the source's calendar (``Settings.calendar``:
``ML_ASSETS_PARTITIONS_START`` for your own source, else the demo source's days)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

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


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def report_per_partition(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    by_day: Mapping[dt.date, Mapping[str, object]],
) -> None:
    """Give each partition of a range run its own metadata.

    A single-run backfill materializes every partition of the range at once, and Dagster
    stamps the step's metadata on each of them; metadata added per partition key replaces
    those entries on that partition's materialization only (``add_asset_metadata`` with
    ``partition_key``), so a day shows its own rows, window or report, and a plot over the
    partitions shows one point per day."""
    for day, metadata in by_day.items():
        context.add_asset_metadata(dict(metadata), asset_key=key, partition_key=day.isoformat())
