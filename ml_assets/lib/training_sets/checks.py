"""Checks on a training set, as pure functions returning ``CheckOutcome``s.

They look for the ways a training set lies: a feature value from after the label time (or
older than its lookback allows), lost or duplicated spine rows, a split that lets the model
train on the future, rows that differ from an obviously correct join, and a single feature
so predictive it must be the outcome leaking in.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.quality import CheckOutcome
from ml_assets.lib.training_sets.lookups import FeatureLookup, TableReader, resolve
from ml_assets.lib.training_sets.reference import reference_point_in_time_join


def no_future_feature_values(
    df: DataFrame, timestamp_column: str, lookbacks: Mapping[str, dt.timedelta | None]
) -> CheckOutcome:
    """Every matched feature timestamp is ``<= label_ts`` and within its lookup's lookback."""
    ts = F.col(timestamp_column).cast("double")
    aggregates = []
    for column, lookback in lookbacks.items():
        matched = F.col(column).cast("double")
        aggregates.append(F.sum((matched > ts).cast("long")).alias(f"{column}__future"))
        if lookback is not None:
            too_old = (ts - matched) > lookback.total_seconds()
            aggregates.append(F.sum(too_old.cast("long")).alias(f"{column}__beyond_lookback"))
    row = df.select(F.count(F.lit(1)).alias("__rows"), *aggregates).first()
    counts = {k: int(row[k] or 0) for k in row.asDict() if k != "__rows"}
    bad = {k: v for k, v in counts.items() if v}
    return CheckOutcome(
        passed=not bad,
        description=(
            f"Every matched feature timestamp of {list(lookbacks)} is at or before "
            f"{timestamp_column} and within its lookback"
            if not bad
            else "Feature values from the wrong time: "
            + "; ".join(f"{k.replace('__', ': ')} in {v} rows" for k, v in bad.items())
        ),
        observed={"rows": int(row["__rows"]), **counts},
    )


def feature_windows_complete(
    df: DataFrame, timestamp_column: str, windows: Mapping[str, int], data_start: dt.date
) -> CheckOutcome:
    """No row's feature window reaches before the first day of the data (``data_start``).

    ``windows`` maps each lookup's matched-timestamp column to its longest feature window in
    days. A matched ``feature_ts`` closes its window, so a row is truncated when
    ``feature_ts - window < data_start``: its 90-day counts are counts over fewer days, a
    value serving never produces. Rows with no match carry no window and are not judged.
    """
    start = F.lit(dt.datetime.combine(data_start, dt.time(), dt.UTC).timestamp())
    short = {c: (F.col(c).cast("double") - F.lit(d * 86_400)) < start for c, d in windows.items()}
    aggregates = [F.sum(cut.cast("long")).alias(c) for c, cut in short.items()]
    truncated = F.lit(False)
    for cut in short.values():
        truncated = truncated | cut
    row = df.select(
        F.count(F.lit(1)).alias("__rows"),
        F.min(F.when(truncated, F.col(timestamp_column).cast("double"))).alias("__first"),
        F.max(F.when(truncated, F.col(timestamp_column).cast("double"))).alias("__last"),
        *aggregates,
    ).first()
    counts = {column: int(row[column] or 0) for column in windows}
    bad = {c: n for c, n in counts.items() if n}
    observed: dict[str, object] = {
        "rows": int(row["__rows"]),
        "data_start": data_start.isoformat(),
        **{f"{c}__truncated_rows": n for c, n in counts.items()},
    }
    if bad:
        observed |= {"first_truncated": _iso(row["__first"]), "last_truncated": _iso(row["__last"])}
        description = (
            f"Feature windows reach before the data starts ({data_start}): "
            + "; ".join(f"{c} ({windows[c]}-day window) in {n} rows" for c, n in bad.items())
            + f"; {timestamp_column} {_iso(row['__first'])}..{_iso(row['__last'])}. Those "
            "rows' windowed features are computed over fewer days than serving uses: land "
            "history before them, or drop those observation times (the labels do so when "
            "computed with the declaration's history_days)."
        )
    else:
        description = (
            "Every row's feature windows lie inside the data (from "
            f"{data_start}): " + ", ".join(f"{c} {d} days" for c, d in windows.items())
        )
    return CheckOutcome(passed=not bad, description=description, observed=observed)


def one_row_per_spine_row(
    spine: DataFrame, training: DataFrame, columns: Sequence[str]
) -> CheckOutcome:
    """The training set has each spine row (by ``columns``) exactly as often as the spine."""
    cols = list(columns)
    expected = spine.groupBy(*cols).agg(F.count(F.lit(1)).alias("expected"))
    found = training.groupBy(*cols).agg(F.count(F.lit(1)).alias("found"))
    # aliases make the null-safe join on every column unambiguous
    diff = (
        expected.alias("e")
        .join(
            found.alias("f"),
            [F.col(f"e.{c}").eqNullSafe(F.col(f"f.{c}")) for c in cols],
            "full",
        )
        .select(
            *[F.coalesce(F.col(f"e.{c}"), F.col(f"f.{c}")).alias(c) for c in cols],
            F.coalesce(F.col("expected"), F.lit(0)).alias("expected"),
            F.coalesce(F.col("found"), F.lit(0)).alias("found"),
        )
    )
    summary = diff.select(
        F.sum("expected").alias("spine_rows"),
        F.sum("found").alias("training_rows"),
        F.sum((F.col("found") < F.col("expected")).cast("long")).alias("rows_missing"),
        F.sum((F.col("found") > F.col("expected")).cast("long")).alias("rows_extra"),
    ).first()
    observed = {k: int(summary[k] or 0) for k in summary.asDict()}
    bad = observed["rows_missing"] or observed["rows_extra"]
    sample = []
    if bad:
        sample = [
            tuple(r) for r in diff.where("found != expected").orderBy(*cols).limit(5).collect()
        ]
    return CheckOutcome(
        passed=not bad,
        description=(
            f"{observed['training_rows']} training rows for {observed['spine_rows']} spine rows, "
            "one for one"
            if not bad
            else f"{observed['rows_missing']} spine row(s) missing or short and "
            f"{observed['rows_extra']} repeated or unknown, e.g. (keys, expected, found) {sample}"
        ),
        observed=observed,
    )


def split_is_time_ordered(
    df: DataFrame, timestamp_column: str, split_column: str, order: Sequence[str]
) -> CheckOutcome:
    """Every split is non-empty and lies wholly after the one before it in ``order``."""
    rows = {
        r[split_column]: r
        for r in df.groupBy(split_column)
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.min(F.col(timestamp_column).cast("double")).alias("first"),
            F.max(F.col(timestamp_column).cast("double")).alias("last"),
        )
        .collect()
    }
    problems = []
    unknown = [s for s in rows if s not in order]
    if unknown:
        problems.append(f"unknown split values {unknown}")
    empty = [s for s in order if s not in rows]
    if empty:
        problems.append(f"empty splits {empty}")
    present = [s for s in order if s in rows]
    for earlier, later in zip(present, present[1:], strict=False):
        if rows[earlier]["last"] >= rows[later]["first"]:
            problems.append(
                f"{earlier} ends at {_iso(rows[earlier]['last'])}, not before {later} starts "
                f"at {_iso(rows[later]['first'])}"
            )
    observed: dict[str, object] = {}
    for split, r in rows.items():
        key = str(split)
        observed |= {
            f"{key}_rows": int(r["rows"]),
            f"{key}_first": _iso(r["first"]),
            f"{key}_last": _iso(r["last"]),
        }
    return CheckOutcome(
        passed=not problems,
        description=(
            " < ".join(present) + f" by {timestamp_column}, none empty"
            if not problems
            else "; ".join(problems)
        ),
        observed=observed,
    )


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return "none"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def single_feature_aucs(
    frame: pd.DataFrame, label: str, features: Sequence[str]
) -> dict[str, float]:
    """Each feature alone as a score: ``max(AUC, 1 - AUC)``, so a reversed signal counts too.

    Nulls are a value of their own (ranked below every number); a string feature is scored by
    the label rate of its value (target encoding on the same rows: generous to the feature,
    which is the right direction for a leakage alarm).
    """
    y = frame[label].to_numpy()
    aucs = {}
    for name in features:
        column = frame[name]
        if column.dtype == object or isinstance(column.dtype, pd.StringDtype):
            codes = column.fillna("\0null")
            score = codes.map(frame.groupby(codes)[label].mean()).to_numpy(dtype=float)
        elif np.issubdtype(column.dtype, np.datetime64):
            score = column.astype("int64").to_numpy(dtype=float)
        else:
            values = column.to_numpy(dtype=float)
            floor = np.nanmin(values) - 1 if np.isfinite(values).any() else 0.0
            score = np.where(np.isnan(values), floor, values)
        auc = roc_auc(score, y)
        aucs[name] = round(max(auc, 1 - auc), 4)
    return aucs


def no_single_feature_leak(
    df: DataFrame,
    label: str,
    features: Sequence[str],
    *,
    threshold: float = 0.95,
    max_rows: int = 200_000,
) -> CheckOutcome:
    """No single feature predicts the label with ROC AUC >= ``threshold`` on its own."""
    total = df.count()
    sample = df if total <= max_rows else df.sample(fraction=max_rows / total, seed=17)
    frame = sample.select(label, *features).toPandas()
    aucs = single_feature_aucs(frame, label, features)
    leaks = {k: v for k, v in aucs.items() if v >= threshold}
    top = sorted(aucs.items(), key=lambda kv: -kv[1])[:5]
    return CheckOutcome(
        passed=not leaks,
        description=(
            f"No feature alone reaches ROC AUC {threshold}; strongest: {top[0][0]} {top[0][1]}"
            if not leaks
            else f"Suspected leakage: {', '.join(f'{k} (AUC {v})' for k, v in leaks.items())} "
            f"reach ROC AUC >= {threshold} alone"
        ),
        observed={
            "threshold": threshold,
            "rows_scored": len(frame),
            "max_auc": top[0][1] if top else 0.5,
            "top_features": dict(top),
            "leaking_features": sorted(leaks),
        },
    )


def matches_reference_join(
    training: DataFrame,
    spine: DataFrame,
    lookups: Sequence[FeatureLookup],
    *,
    tables: TableReader,
    versions: Mapping[str, int],
    spine_columns: Sequence[str],
    sample_size: int = 200,
) -> CheckOutcome:
    """A deterministic sample of spine rows, joined by the naive reference, row by row.

    The sample is the ``sample_size`` spine rows with the smallest hash of ``spine_columns``;
    feature rows are read at the recorded ``versions``, for the sampled keys only.
    """
    cols = list(spine_columns)
    picked = (
        spine.select(*cols, F.xxhash64(*cols).alias("__h")).orderBy("__h").limit(sample_size)
    ).drop("__h")
    spine_rows = [r.asDict() for r in picked.collect()]
    expected = spine_rows
    compared: list[str] = []
    for lookup in lookups:
        resolved = resolve(lookup)  # exactly as build_training_set resolves it
        table, first_key = resolved.contract.name, lookup.lookup_keys[0]
        sampled_keys = sorted({r[first_key] for r in spine_rows})
        rows = (
            resolved.select_from(tables.read(table, version=versions[table]), "__ts")
            .where(F.col(first_key).isin(sampled_keys))
            .collect()
        )
        expected = reference_point_in_time_join(
            expected,
            [r.asDict() for r in rows],
            lookup_key=lookup.lookup_keys,
            timestamp_lookup_key=lookup.timestamp_lookup_key,
            feature_timestamp_key="__ts",
            feature_names=list(resolved.outputs),
            lookback_window=lookup.lookback_window,
            default_values=dict(resolved.defaults),
        )
        compared += resolved.outputs
    selected = training.join(picked.distinct(), cols, "inner").select(*cols, *compared)
    found = Counter(_row_key(r.asDict(), cols, compared) for r in selected.collect())
    wanted_rows = Counter(_row_key(r, cols, compared) for r in expected)
    missing = wanted_rows - found
    unexpected = found - wanted_rows
    sample = [dict(zip([*cols, *compared], k, strict=True)) for k in list(missing)[:2]]
    mismatched = sum(missing.values())
    return CheckOutcome(
        passed=not missing and not unexpected,
        description=(
            f"{len(spine_rows)} sampled spine rows equal the reference join on "
            f"{len(compared)} columns"
            if not missing and not unexpected
            else f"{mismatched} of {len(spine_rows)} sampled rows differ from the reference join "
            f"({sum(unexpected.values())} rows found that it does not produce); expected e.g. "
            f"{sample}"
        ),
        observed={
            "rows_sampled": len(spine_rows),
            "columns_compared": len(compared),
            "rows_differing": mismatched,
            "rows_unexpected": sum(unexpected.values()),
        },
    )


def _row_key(row: Mapping[str, object], cols: Sequence[str], compared: Sequence[str]) -> tuple:
    return tuple(_comparable(row[c]) for c in [*cols, *compared])


def _comparable(value: object) -> object:
    if isinstance(value, float):
        return None if np.isnan(value) else value
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return value
