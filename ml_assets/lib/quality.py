"""Data-quality checks on Spark DataFrames, as pure functions.

Each returns a ``CheckOutcome``: whether it passed, what was observed and against which limit,
and a one-line description. The Dagster layer turns outcomes into ``AssetCheckResult``s; the
functions are reused by every stage (raw tables, feature tables, training sets).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_assets.lib.lakehouse import TableSpec, table_schema_problems


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    observed: Mapping[str, object] = field(default_factory=dict)


def schema_matches(spec: TableSpec, found: T.StructType) -> CheckOutcome:
    problems = table_schema_problems(spec, found)
    return CheckOutcome(
        passed=not problems,
        description=(
            f"Stored schema of {spec.name} matches its declaration"
            if not problems
            else f"{len(problems)} difference(s) from the declared schema: "
            + "; ".join(str(p) for p in problems)
        ),
        observed={"differences": len(problems), "columns_declared": len(spec.columns)},
    )


def _null_counts(df: DataFrame, columns: Sequence[str]) -> tuple[int, dict[str, int]]:
    """Rows, and nulls per column, in one pass."""
    row = df.select(
        F.count(F.lit(1)).alias("__rows"),
        *[F.sum(F.col(c).isNull().cast("long")).alias(c) for c in columns],
    ).first()
    return int(row["__rows"]), {c: int(row[c] or 0) for c in columns}


def not_null(df: DataFrame, columns: Sequence[str]) -> CheckOutcome:
    rows, nulls = _null_counts(df, columns)
    bad = {c: n for c, n in nulls.items() if n}
    return CheckOutcome(
        passed=not bad,
        description=(f"No nulls in {list(columns)}" if not bad else f"Null keys found: {bad}"),
        observed={"rows": rows, **{f"nulls_{c}": n for c, n in nulls.items()}},
    )


def unique(df: DataFrame, keys: Sequence[str], sample_size: int = 5) -> CheckOutcome:
    dupes = df.groupBy(*keys).agg(F.count(F.lit(1)).alias("__n")).where("__n > 1")
    summary = dupes.select(
        F.count(F.lit(1)).alias("keys"), F.sum(F.col("__n") - 1).alias("extra_rows")
    ).first()
    n_keys, extra = int(summary["keys"] or 0), int(summary["extra_rows"] or 0)
    sample = []
    if n_keys:
        sample = [
            tuple(r[k] for k in keys) for r in dupes.orderBy(*keys).limit(sample_size).collect()
        ]
    return CheckOutcome(
        passed=n_keys == 0,
        description=(
            f"{tuple(keys)} is unique"
            if not n_keys
            else f"{n_keys} key(s) of {tuple(keys)} appear more than once "
            f"({extra} extra rows), e.g. {sample}"
        ),
        observed={"duplicate_keys": n_keys, "extra_rows": extra, "sample": str(sample)},
    )


def constraints_hold(df: DataFrame, constraints: Mapping[str, str]) -> CheckOutcome:
    """Each constraint is a SQL boolean expression every row must satisfy.

    As for Delta ``CHECK`` constraints, a row violates a constraint when the expression is
    false; a null result (a null input) is not a violation.
    """
    row = df.select(
        F.count(F.lit(1)).alias("__rows"),
        *[F.sum((~F.expr(expr)).cast("long")).alias(name) for name, expr in constraints.items()],
    ).first()
    violations = {name: int(row[name] or 0) for name in constraints}
    bad = {k: v for k, v in violations.items() if v}
    return CheckOutcome(
        passed=not bad,
        description=(
            f"All {len(constraints)} constraints hold"
            if not bad
            else "Constraint violations: "
            + "; ".join(f"{k} ({constraints[k]}): {v} rows" for k, v in bad.items())
        ),
        observed={
            "rows": int(row["__rows"]),
            **{f"violations_{k}": v for k, v in violations.items()},
        },
    )


def rows_conserved(landed: int, kept: int, quarantined: int, duplicates: int) -> CheckOutcome:
    accounted = kept + quarantined + duplicates
    return CheckOutcome(
        passed=landed == accounted,
        description=(
            f"{landed} lines landed = {kept} kept + {quarantined} quarantined + "
            f"{duplicates} duplicates removed"
            if landed == accounted
            else f"{landed} lines landed but {accounted} accounted for "
            f"({kept} kept + {quarantined} quarantined + {duplicates} duplicates): "
            f"{landed - accounted} lines lost"
        ),
        observed={
            "lines_landed": landed,
            "rows_kept": kept,
            "rows_quarantined": quarantined,
            "duplicates_removed": duplicates,
            "lines_unaccounted": landed - accounted,
        },
    )


def fresh(
    newest_in_table: dt.datetime | None,
    expected_through: dt.datetime,
    max_lag: dt.timedelta,
    *,
    what: str = "newest row",
) -> CheckOutcome:
    """``what`` (the newest row, the last write, ...) is at most ``max_lag`` behind what landed."""
    if newest_in_table is None:
        return CheckOutcome(False, "The table is empty", {"max_lag_hours": _hours(max_lag)})
    lag = max(expected_through - newest_in_table, dt.timedelta(0))
    return CheckOutcome(
        passed=expected_through - newest_in_table <= max_lag,
        description=(
            f"{what.capitalize()} ({newest_in_table.isoformat()}) is {_hours(lag)} h behind the "
            f"landed data through {expected_through.isoformat()} (limit {_hours(max_lag)} h)"
        ),
        observed={
            what.replace(" ", "_"): newest_in_table.isoformat(),
            "landed_through": expected_through.isoformat(),
            "lag_hours": _hours(lag),
            "max_lag_hours": _hours(max_lag),
        },
    )


def _hours(delta: dt.timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


def null_rates_within(df: DataFrame, ceilings: Mapping[str, float]) -> CheckOutcome:
    """The share of nulls of each column is at most its ceiling."""
    rows, nulls = _null_counts(df, list(ceilings))
    rates = {c: (nulls[c] / rows if rows else 0.0) for c in ceilings}
    over = {c: r for c, r in rates.items() if r > ceilings[c]}
    return CheckOutcome(
        passed=not over,
        description=(
            f"Null rates of {len(ceilings)} columns within their ceilings"
            if not over
            else "Null rate above the ceiling: "
            + "; ".join(f"{c} {r:.1%} > {ceilings[c]:.1%}" for c, r in over.items())
        ),
        observed={
            "rows": rows,
            **{f"null_rate_{c}": round(r, 4) for c, r in rates.items() if ceilings[c] < 1},
            "columns_over_ceiling": sorted(over),
        },
    )
