"""Point-in-time joins, with the semantics of Databricks Feature Engineering.

For each spine row with key ``k`` and timestamp ``t``, the feature row with key ``k`` and the
greatest feature timestamp ``ts <= t`` is taken whole (a null feature value stays null; it is
never filled from an older row). With a lookback window ``w`` that row must also satisfy
``t - ts <= w`` (inclusive). No match gives nulls; ``default_values`` then replace every null
of their column. Exactly one output row per spine row, duplicates preserved, in any order.

How: spine and feature rows are unioned and ordered per key by time, feature rows before
spine rows at equal times; for each spine row the last non-null feature *struct* before it is
its match. That is one sort per key, O(n log n), whatever the window: a range join would pair
each spine row with every feature row in the window and, without a window, with the whole
history of its key (DESIGN.md: 30 s and 9.5 GiB at 1M x 10M rows).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

_TS = "__pit_ts"
_KIND = "__pit_kind"  # 0: feature row, 1: spine row (feature rows first at equal times)
_MATCH = "__pit_match"


class PointInTimeJoinError(ValueError):
    """Inputs that cannot be joined point-in-time (missing columns, name clashes, ...)."""


def _as_list(lookup_key: str | Sequence[str]) -> list[str]:
    keys = [lookup_key] if isinstance(lookup_key, str) else list(lookup_key)
    if not keys:
        raise PointInTimeJoinError("lookup_key must name at least one column.")
    return keys


def _require(df: DataFrame, columns: Sequence[str], which: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise PointInTimeJoinError(
            f"The {which} DataFrame must contain columns {list(columns)}, but {missing} "
            f"were missing (it has {df.columns})."
        )


def point_in_time_join(
    spine_df: DataFrame,
    feature_df: DataFrame,
    *,
    lookup_key: str | Sequence[str],
    timestamp_lookup_key: str,
    feature_timestamp_key: str,
    feature_names: Sequence[str] | None = None,
    lookback_window: dt.timedelta | None = None,
    default_values: Mapping[str, object] | None = None,
) -> DataFrame:
    """Every spine column plus the feature columns, as of each spine row's timestamp."""
    keys = _as_list(lookup_key)
    _require(spine_df, [*keys, timestamp_lookup_key], "spine")
    _require(feature_df, [*keys, feature_timestamp_key], "feature")
    if feature_names is None:
        feature_names = [
            c for c in feature_df.columns if c not in keys and c != feature_timestamp_key
        ]
    feature_names = list(feature_names)
    _require(feature_df, feature_names, "feature")
    clashes = [f for f in feature_names if f in spine_df.columns]
    if clashes:
        raise PointInTimeJoinError(
            f"Feature columns {clashes} already exist in the spine DataFrame; rename them in "
            "the spine or select other feature_names."
        )
    if len(set(feature_names)) != len(feature_names):
        raise PointInTimeJoinError(f"feature_names has duplicates: {feature_names}.")
    defaults = dict(default_values or {})
    unknown = [f for f in defaults if f not in feature_names]
    if unknown:
        raise PointInTimeJoinError(
            f"default_values name {unknown}, which are not among the features {feature_names}."
        )
    if lookback_window is not None:
        if not isinstance(lookback_window, dt.timedelta):
            raise PointInTimeJoinError(
                f"lookback_window must be a datetime.timedelta, found {type(lookback_window)}."
            )
        if lookback_window < dt.timedelta(0):
            raise PointInTimeJoinError(f"lookback_window must not be negative: {lookback_window}.")

    spine_fields = {f.name: f.dataType for f in spine_df.schema.fields}
    feature_fields = {f.name: f.dataType for f in feature_df.schema.fields}
    match_type = T.StructType(
        [T.StructField("ts", T.TimestampType())]
        + [T.StructField(f"f{i}", feature_fields[n]) for i, n in enumerate(feature_names)]
    )
    spine_side = spine_df.select(
        *[F.col(c) for c in spine_df.columns],
        F.col(timestamp_lookup_key).cast("timestamp").alias(_TS),
        F.lit(1).alias(_KIND),
        F.lit(None).cast(match_type).alias(_MATCH),
    )
    key_present = F.lit(True)
    for k in [*keys, feature_timestamp_key]:
        key_present = key_present & F.col(k).isNotNull()
    # SQL join semantics: a null key or a null time never matches anything.
    feature_side = feature_df.where(key_present).select(
        *[
            F.col(c).cast(spine_fields[c]).alias(c)
            if c in keys
            else F.lit(None).cast(spine_fields[c]).alias(c)
            for c in spine_df.columns
        ],
        F.col(feature_timestamp_key).cast("timestamp").alias(_TS),
        F.lit(0).alias(_KIND),
        F.struct(
            F.col(feature_timestamp_key).cast("timestamp").alias("ts"),
            *[F.col(n).alias(f"f{i}") for i, n in enumerate(feature_names)],
        ).alias(_MATCH),
    )
    upto_now = (
        Window.partitionBy(*keys)
        .orderBy(F.col(_TS).asc_nulls_first(), F.col(_KIND))
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    joined = (
        spine_side.unionByName(feature_side)
        .withColumn(_MATCH, F.last(_MATCH, ignorenulls=True).over(upto_now))
        .where(F.col(_KIND) == 1)
    )
    usable = F.col(_TS).isNotNull() & F.col(_MATCH).isNotNull()
    for k in keys:
        usable = usable & F.col(k).isNotNull()
    if lookback_window is not None:
        age_s = F.col(_TS).cast("double") - F.col(f"{_MATCH}.ts").cast("double")
        usable = usable & (age_s <= lookback_window.total_seconds())
    features = []
    for i, name in enumerate(feature_names):
        value = F.when(usable, F.col(_MATCH)[f"f{i}"])
        if name in defaults:
            value = F.coalesce(value, F.lit(defaults[name]).cast(feature_fields[name]))
        features.append(value.alias(name))
    return joined.select(*[F.col(c) for c in spine_df.columns], *features)
