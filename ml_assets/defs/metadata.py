"""Dagster metadata for tables: what a person sees on an asset in the UI."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ml_assets.lib.lakehouse import TableCommit, TableSpec
from ml_assets.lib.quality import CheckOutcome


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
    """Static metadata on the AssetSpec: visible before the first materialization."""
    return {
        "dagster/table_name": str(spec.name),
        "dagster/column_schema": column_schema(spec),
        "owner": spec.owner,
        "primary_key": ", ".join(spec.primary_key) or "(none)",
        "partitioned_by": ", ".join(spec.partition_by) or "(none)",
    }


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


def write_metadata(
    spec: TableSpec, commit: TableCommit, uri: str, *, total_rows: int
) -> dict[str, object]:
    metadata: dict[str, object] = {
        "dagster/table_name": str(spec.name),
        "dagster/row_count": total_rows,
        "dagster/uri": uri,
        "delta_version": commit.version,
        "delta_operation": commit.operation,
        "committed_at": commit.timestamp.isoformat(),
        "location": dg.MetadataValue.path(uri.removeprefix("file://")),
    }
    if commit.rows_written is not None:  # only when the writer recorded it
        metadata["rows_written"] = commit.rows_written
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
