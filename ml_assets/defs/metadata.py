"""Dagster metadata for tables: what a person sees on an asset in the UI."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from pyspark.sql import functions as F

from ml_assets.lib.lakehouse import TableCommit, TableId, TableSpec
from ml_assets.lib.quality import CheckOutcome
from ml_assets.lib.training_sets.declaration import Lineage
from ml_assets.resources.lakehouse import Lakehouse


def table_key(table_name: str) -> dg.AssetKey:
    """The asset of a table ``catalog.schema.table`` is ``schema/table`` (the catalog is the
    deployment's)."""
    table = TableId.parse(table_name)
    return dg.AssetKey([table.schema, table.table])


def column_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.dtype,
                description=c.description or None,
                constraints=dg.TableColumnConstraints(nullable=c.nullable),
            )
            for c in spec.columns
        ]
    )


def spec_metadata(spec: TableSpec) -> dict[str, object]:
    """Static metadata on the AssetSpec: visible before the first materialization. The
    Delta table's own partition columns are named as such (a daily-partitioned asset may be
    one unpartitioned table, e.g. drift windows as rows); none, nothing is said."""
    metadata: dict[str, object] = {
        "dagster/table_name": str(spec.name),
        "dagster/column_schema": column_schema(spec),
        "owner": spec.owner,
        "primary_key": ", ".join(spec.primary_key) or "(none)",
    }
    if spec.partition_by:
        metadata["delta_partition_columns"] = ", ".join(spec.partition_by)
    return metadata


def table_asset_spec(
    key: dg.AssetKey,
    spec: TableSpec,
    *,
    group: str,
    deps: Sequence[dg.AssetKey | dg.AssetDep] = (),
    description: str | None = None,
    metadata: dict[str, object] | None = None,
    automation_condition: dg.AutomationCondition | None = None,
) -> dg.AssetSpec:
    """The spec of an asset that is one Delta table: description, schema and owner from it."""
    return dg.AssetSpec(
        key,
        group_name=group,
        deps=list(deps),
        description=description or spec.description,
        metadata={**spec_metadata(spec), **(metadata or {})},
        kinds={"delta", "spark"},
        automation_condition=automation_condition,
    )


LINEAGE = "lineage"  # the metadata entry where a training set records what it was built from


def recorded_lineage(instance: dg.DagsterInstance, key: dg.AssetKey) -> Lineage | None:
    """The lineage the latest materialization of the training set ``key`` recorded."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    entry = event.asset_materialization.metadata.get(LINEAGE)
    return Lineage.from_metadata(entry.value) if entry is not None else None


@dataclass(frozen=True)
class ReadBack:
    """What a table holds after a write, read back in one pass: every row, and the rows,
    distinct keys and time bounds of the range the step wrote (the whole table if none)."""

    rows: int
    in_range: int
    keys: int | None
    first: object
    last: object


def read_back(
    lakehouse: Lakehouse,
    spec: TableSpec,
    *,
    key: str | None = None,
    time_column: str | None = None,
    range_column: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> ReadBack:
    inside = (
        F.col(range_column).between(F.lit(start), F.lit(end))
        if range_column is not None
        else F.lit(True)
    )
    aggregates = [
        F.count(F.lit(1)).alias("rows"),
        F.sum(inside.cast("long")).alias("in_range"),
        F.countDistinct(F.when(inside, F.col(key))).alias("keys") if key else F.lit(None),
        F.min(F.when(inside, F.col(time_column))).alias("first") if time_column else F.lit(None),
        F.max(F.when(inside, F.col(time_column))).alias("last") if time_column else F.lit(None),
    ]
    row = lakehouse.read(spec).select(*aggregates).first()
    return ReadBack(
        rows=int(row[0]),
        in_range=int(row[1] or 0),
        keys=None if key is None else int(row[2] or 0),
        first=row[3],
        last=row[4],
    )


def rows_per_day(
    lakehouse: Lakehouse,
    spec: TableSpec,
    day_column: str,
    start: dt.date,
    end: dt.date,
    *,
    key: str | None = None,
    time_column: str | None = None,
    replaced: bool = True,
) -> dict[dt.date, dict[str, object]]:
    """Each day's rows of ``start..end`` (and distinct ``key`` values, first and last
    ``time_column``), in one aggregation; a day without rows has 0 rows. ``replaced``: the
    write replaced the range, so a day's rows are the rows written for it (a merge's per-day
    writes are not known: it says nothing)."""
    aggregates = [F.count(F.lit(1)).alias("rows")]
    if key:
        aggregates.append(F.countDistinct(key).alias("keys"))
    if time_column:
        aggregates += [F.min(time_column).alias("first"), F.max(time_column).alias("last")]
    found = {
        row[day_column]: row.asDict()
        for row in lakehouse.read(spec)
        .where(F.col(day_column).between(F.lit(start), F.lit(end)))
        .groupBy(day_column)
        .agg(*aggregates)
        .collect()
    }
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    per_day: dict[dt.date, dict[str, object]] = {}
    for day in days:
        row = found.get(day, {})
        stats: dict[str, object] = {"dagster/partition_row_count": int(row.get("rows", 0))}
        if replaced:
            stats["rows_written"] = stats["dagster/partition_row_count"]
        if key:
            stats["distinct_" + key] = int(row.get("keys", 0))
        if time_column:
            stats[f"first_{time_column}"] = str(row.get("first"))
            stats[f"last_{time_column}"] = str(row.get("last"))
        per_day[day] = stats
    return per_day


def write_metadata(
    spec: TableSpec, commit: TableCommit, uri: str, *, total_rows: int, range_run: bool = False
) -> dict[str, object]:
    """The table after a write. ``range_run``: a run over several partitions whose write was a
    merge; its row count is the run's (``rows_merged_in_run``), never a partition's."""
    metadata: dict[str, object] = {
        "dagster/table_name": str(spec.name),
        "dagster/row_count": total_rows,
        "dagster/uri": uri,
        "delta_version": dg.MetadataValue.text(str(commit.version)),  # text: no chart
        "delta_operation": commit.operation,
        "committed_at": commit.timestamp.isoformat(),
        "location": dg.MetadataValue.path(uri.removeprefix("file://")),
    }
    if commit.rows_written is not None:  # only when the writer recorded it
        metadata["rows_merged_in_run" if range_run else "rows_written"] = commit.rows_written
    return metadata


def check_result(
    outcome: CheckOutcome,
    *,
    asset_key: dg.AssetKey | None = None,
    check_name: str | None = None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        asset_key=asset_key,
        check_name=check_name,
        severity=severity,
        description=outcome.description,
        metadata=dict(outcome.observed),
    )
