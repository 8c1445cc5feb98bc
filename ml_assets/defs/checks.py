"""Standard checks for a table asset, built from its TableSpec.

Each check reads the table through the lakehouse resource and runs a pure function of
``ml_assets.lib.quality``; the observed values and limits go into the check's metadata.
"""

from collections.abc import Callable, Mapping, Sequence

import dagster as dg

from ml_assets import names
from ml_assets.defs.metadata import check_result
from ml_assets.lib import quality
from ml_assets.lib.lakehouse import TableSpec
from ml_assets.lib.quality import CheckOutcome
from ml_assets.resources.lakehouse import Lakehouse

Evaluate = Callable[[Lakehouse], CheckOutcome]


def table_check(
    key: dg.AssetKey,
    name: str,
    description: str,
    evaluate: Evaluate,
    *,
    blocking: bool = True,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=key, name=name, description=description, blocking=blocking)
    def _check(lakehouse: Lakehouse) -> dg.AssetCheckResult:
        return check_result(evaluate(lakehouse), severity=severity)

    return _check


def standard_table_checks(
    key: dg.AssetKey,
    spec: TableSpec,
    *,
    constraints: Mapping[str, str] | None = None,
    not_null: Sequence[str] | None = None,
) -> list[dg.AssetChecksDefinition]:
    """Schema, non-null keys, unique keys and value constraints: all blocking.

    ``not_null`` defaults to the primary key; pass it to also cover entity keys and times.
    """
    checks = [
        table_check(
            key,
            names.CHECK_SCHEMA,
            f"The stored schema of {spec.name} equals its declared schema.",
            lambda lh: quality.schema_matches(spec, lh.schema(spec)),
        )
    ]
    required = list(not_null if not_null is not None else spec.primary_key)
    if required:
        checks.append(
            table_check(
                key,
                names.CHECK_KEYS_NOT_NULL,
                f"No nulls in the key columns {required}.",
                lambda lh: quality.not_null(lh.read(spec), required),
            )
        )
    if spec.primary_key:
        keys = list(spec.primary_key)
        checks += [
            table_check(
                key,
                names.CHECK_KEY_UNIQUE,
                f"Each key {tuple(keys)} appears once.",
                lambda lh: quality.unique(lh.read(spec), keys),
            ),
        ]
    if constraints:
        checks.append(
            table_check(
                key,
                names.CHECK_VALUES_VALID,
                "Every row satisfies: " + "; ".join(f"{k}: {v}" for k, v in constraints.items()),
                lambda lh: quality.constraints_hold(lh.read(spec), constraints),
            )
        )
    return checks
