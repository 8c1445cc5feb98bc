"""Standard checks for a table asset, built from its TableSpec.

Each check reads the table through the lakehouse resource and runs a pure function of
``ml_assets.lib.quality``; the observed values and limits go into the check's metadata.
"""

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

import dagster as dg
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.defs.metadata import check_result
from ml_assets.lib import quality
from ml_assets.lib.features.contracts import FeatureTableContract
from ml_assets.lib.lakehouse import TableSpec
from ml_assets.lib.quality import CheckOutcome
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.landing import LandingZone

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


def feature_table_checks(
    key: dg.AssetKey, contract: FeatureTableContract, *, landed_kind: str
) -> list[dg.AssetChecksDefinition]:
    """The standard checks of a feature table, all from its contract.

    Blocking: schema, non-null keys and timestamp, unique (keys, timestamp), constraints and
    null-rate ceilings. WARN: freshness, the newest ``feature_ts`` against the end of the
    newest landed day of ``landed_kind``, within the contract's freshness SLA.
    """
    spec = contract.table_spec
    ceilings = contract.null_rate_ceilings

    def fresh(lakehouse: Lakehouse, landing: LandingZone) -> CheckOutcome:
        return newest_row_fresh(
            lakehouse, landing, spec, contract.timestamp_key, landed_kind, contract.freshness_sla
        )

    return [
        *standard_table_checks(key, spec, constraints=contract.constraints),
        table_check(
            key,
            names.CHECK_NULL_RATES,
            "Null rate of each feature within its contract ceiling: "
            + ", ".join(f"{k} ≤ {v:.0%}" for k, v in ceilings.items() if v < 1),
            lambda lh: quality.null_rates_within(lh.read(spec), ceilings),
        ),
        fresh_check(
            key,
            fresh,
            f"The newest {contract.timestamp_key} is at most {contract.freshness_sla} behind the "
            f"end of the newest landed {landed_kind} day (the contract's freshness SLA).",
        ),
    ]


def fresh_check(
    key: dg.AssetKey, evaluate: Callable[[Lakehouse, LandingZone], CheckOutcome], description: str
) -> dg.AssetChecksDefinition:
    """A non-blocking WARN freshness check."""

    @dg.asset_check(asset=key, name=names.CHECK_FRESH, description=description, blocking=False)
    def _check(lakehouse: Lakehouse, landing: LandingZone) -> dg.AssetCheckResult:
        return check_result(evaluate(lakehouse, landing), severity=dg.AssetCheckSeverity.WARN)

    return _check


def newest_row_fresh(
    lakehouse: Lakehouse,
    landing: LandingZone,
    spec: TableSpec,
    column: str,
    landed_kind: str,
    max_lag: dt.timedelta,
) -> CheckOutcome:
    """The newest ``column`` of the table against the end of the newest landed day."""
    newest = landing.newest_landing(landed_kind)
    if newest is None:
        return CheckOutcome(False, "Nothing has landed yet", {})
    landed_through = dt.datetime.combine(newest[0] + dt.timedelta(days=1), dt.time(), dt.UTC)
    # as epoch seconds: collected timestamps are naive in the client's local time zone
    epoch = lakehouse.read(spec).select(F.max(column).cast("double")).first()[0]
    last = dt.datetime.fromtimestamp(epoch, dt.UTC) if epoch is not None else None
    return quality.fresh(last, landed_through, max_lag, what=f"newest {column}")
