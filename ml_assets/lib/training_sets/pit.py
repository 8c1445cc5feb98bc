"""Point-in-time joins, with the semantics of Databricks Feature Engineering.

For each spine row with key ``k`` and timestamp ``t``, the feature row with key ``k`` and the
greatest feature timestamp ``ts <= t`` is taken whole (a null feature value stays null; it is
never filled from an older row). With a lookback window ``w`` that row must also satisfy
``t - ts <= w`` (inclusive). No match gives nulls; ``default_values`` then replace every null
of their column. Exactly one output row per spine row, duplicates preserved, in any order.

How, in steps that keep the wide rows out of the matching:
1. each spine row's match, the greatest feature time of its key at or before its time (and,
   with a lookback, not before ``t - w``), by one of two plans:
   - ``arrays``: the feature times are gathered into one list per key (a hash aggregate), each
     spine row takes its key's list by a left equi-join, and its match is the greatest
     element in range (``array_max(filter(...))``). Its work is the number of (spine row,
     feature time) pairs sharing a key: linear while keys' histories are short, a product
     where one key has both a long history and many spine rows;
   - ``window``: the distinct (key, spine time) pairs and the feature times are unioned and
     ordered per key by time, feature rows first at equal times; each spine time's match is
     the last feature time before it (``last(ignorenulls)`` over a running window), and every
     spine row takes the match of its (key, time) by an equi-join. One sort per key, whatever
     the histories, but the embedded engine's window operator is slow: 3.4 s at 1M x 10M
     rows (100 feature rows per key) where the whole join by ``arrays`` takes about 1.5 s.
   ``strategy="auto"`` (the default) takes ``arrays`` while the pairs it would build are at
   most 32 x the rows ``window`` would sort: at once when no key has more than 32 spine rows
   (the pairs cannot exceed that bound then; only the spine is counted), else by counting
   both inputs per key (measured on the embedded engine: about 12 ns per pair against
   about 0.4 us per sorted row; with 1,000 keys of 10,000 feature rows and 1,000 spine rows
   each, ``arrays`` took 124 s and ``window`` 21 s; benchmarks/README.md). The constant is
   the embedded engine's: on the local Spark lane the window was the faster plan at 9 pairs
   per row (16-18 s against 18-22 s at 1M x 10M);
2. the matched feature row's values come by an equi-join on (key, matched time).
A range join would instead pair each spine row with every feature row in the window and,
without a window, with the whole history of its key (DESIGN.md: 30 s and 9.5 GiB at 1M x 10M
rows). Carrying whole feature rows through the window's sort (a ``last`` over a struct) was
measured at twice the time of the narrow rows.

Precondition: the feature frame is unique on (keys, feature time), as every feature table is
(DESIGN.md: enforced at write, by ``merge``, and by each table's blocking ``key_unique``
check). A repeated row that a spine row matches would repeat that spine row; a training
set's ``one_row_per_spine_row`` check catches it. Guarding inside the join costs a second
window pass over every row (measured: 8.3 s instead of 4.8 s at 1M x 10M), and deduplicating
the feature frame first costs 40 s on Sail.

Choosing the plan runs a small query before the join is planned (the spine's rows per key,
0.04-0.07 s for 1M rows; where a key has more than 32, a second one: both inputs' counts per
key, joined, 0.2-0.4 s at 1M x 10M), so the inputs' plans run once more for it: where the spine is
itself the result of an earlier join, that join runs again (``build_training_set`` asks
``choose_strategy`` of its own spine for that reason). ``strategy="arrays"`` or ``"window"``
skips the count.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, TimestampNTZType, TimestampType

_TS = "__pit_ts"
_KIND = "__pit_kind"  # 0: feature row, 1: spine row (feature rows first at equal times)
_MATCH = "__pit_match"  # the matched feature time
_FEATURE = "__pit_f"
_TIMES = "__pit_times"  # a key's feature times, for the arrays plan
_COUNT = "__pit_n"

STRATEGIES = ("auto", "arrays", "window")
PAIRS_PER_SORTED_ROW = 32  # arrays while pairs <= this x rows (measured; see the docstring)


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
    strategy: str = "auto",
) -> DataFrame:
    """Every spine column plus the feature columns, as of each spine row's timestamp.

    ``strategy`` picks how matches are found (``"auto"``, ``"arrays"`` or ``"window"``; the
    module docstring says what each costs); every strategy gives the same rows.
    """
    if strategy not in STRATEGIES:
        raise PointInTimeJoinError(
            f"strategy must be one of {list(STRATEGIES)}, found {strategy!r}."
        )
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

    types = _Types.of(spine_df, feature_df, timestamp_lookup_key, feature_timestamp_key)
    # 1. Each spine row's match: the latest feature time of its key at or before its time.
    spine_times, feature_times = _narrow(
        spine_df, feature_df, keys, timestamp_lookup_key, feature_timestamp_key, types
    )
    if strategy == "auto":
        strategy = _choose(spine_times, feature_times, keys).strategy
    spine_side = spine_df.withColumn(_TS, types.spine_time(timestamp_lookup_key))
    if strategy == "arrays":
        joined = _match_by_arrays(spine_side, feature_times, keys, lookback_window)
    else:
        matches = _match_by_window(spine_times, feature_times, keys, lookback_window, types.time)
        joined = spine_side.join(matches.select(*keys, _TS, _MATCH), [*keys, _TS], "left")
    # 2. The matched feature row's values, by an equi-join on (key, matched time).
    if feature_names:
        values = feature_df.select(
            *[types.feature_key(k).alias(f"{_FEATURE}k{i}") for i, k in enumerate(keys)],
            types.feature_time(feature_timestamp_key).alias(f"{_FEATURE}ts"),
            *[F.col(n).alias(f"{_FEATURE}{i}") for i, n in enumerate(feature_names)],
        )
        condition = F.col(_MATCH) == F.col(f"{_FEATURE}ts")
        for i, k in enumerate(keys):
            condition = condition & (F.col(k) == F.col(f"{_FEATURE}k{i}"))
        joined = joined.join(values, condition, "left")
    features = []
    for i, name in enumerate(feature_names):
        value = F.col(f"{_FEATURE}{i}")
        if name in defaults:
            value = F.coalesce(value, F.lit(defaults[name]).cast(types.feature[name]))
        features.append(value.alias(name))
    return joined.select(*[F.col(c) for c in spine_df.columns], *features)


@dataclass(frozen=True)
class _Types:
    """The inputs' column types and the type their times are compared in: both sides' own
    type when they share a timestamp type (no per-row conversion: casting 10M
    ``timestamp_ntz`` values to ``timestamp`` costs seconds on the embedded engine), else
    ``timestamp`` (a date is midnight of its day)."""

    spine: dict[str, DataType]
    feature: dict[str, DataType]
    time: DataType

    @classmethod
    def of(cls, spine_df: DataFrame, feature_df: DataFrame, ts: str, feature_ts: str) -> _Types:
        spine = {f.name: f.dataType for f in spine_df.schema.fields}
        feature = {f.name: f.dataType for f in feature_df.schema.fields}
        same = spine[ts] == feature[feature_ts]
        shared = same and isinstance(spine[ts], (TimestampType, TimestampNTZType))
        return cls(spine, feature, spine[ts] if shared else TimestampType())

    def spine_time(self, name: str) -> Column:
        return _as_type(F.col(name), self.spine[name], self.time)

    def feature_time(self, name: str) -> Column:
        return _as_type(F.col(name), self.feature[name], self.time)

    def feature_key(self, name: str) -> Column:
        return _as_type(F.col(name), self.feature[name], self.spine[name])


def _as_type(column: Column, have: DataType, want: DataType) -> Column:
    return column if have == want else column.cast(want)


def _narrow(
    spine_df: DataFrame,
    feature_df: DataFrame,
    keys: list[str],
    ts: str,
    feature_ts: str,
    types: _Types,
) -> tuple[DataFrame, DataFrame]:
    """The (key, spine time) and (key, feature time) rows, in the columns the plans and the
    choice read. SQL join semantics: a null key or time never matches."""

    def present(columns: Sequence[str]) -> Column:
        condition = F.lit(True)
        for c in columns:
            condition = condition & F.col(c).isNotNull()
        return condition

    spine_times = spine_df.where(present([*keys, ts])).select(
        *[F.col(k) for k in keys], types.spine_time(ts).alias(_TS)
    )
    feature_times = feature_df.where(present([*keys, feature_ts])).select(
        *[types.feature_key(k).alias(k) for k in keys], types.feature_time(feature_ts).alias(_TS)
    )
    return spine_times, feature_times


@dataclass(frozen=True)
class StrategyChoice:
    """What ``choose_strategy`` counted and chose."""

    strategy: str
    most_spine_rows_per_key: int  # the largest number of spine rows sharing one key
    # counted only when that number alone does not settle the choice (it is above the constant)
    pairs: int | None = None  # (spine row, feature time) pairs sharing a key: arrays' work
    rows: int | None = None  # spine rows and feature times of the keys both sides have


def choose_strategy(
    spine_df: DataFrame,
    feature_df: DataFrame,
    *,
    lookup_key: str | Sequence[str],
    timestamp_lookup_key: str,
    feature_timestamp_key: str,
) -> StrategyChoice:
    """The plan ``strategy="auto"`` takes for these inputs, and the counts it compared: one
    or two queries, run now. A training set with several lookups asks it of its own spine, so
    that a later lookup's count does not run the earlier lookups' joins again."""
    keys = _as_list(lookup_key)
    _require(spine_df, [*keys, timestamp_lookup_key], "spine")
    _require(feature_df, [*keys, feature_timestamp_key], "feature")
    types = _Types.of(spine_df, feature_df, timestamp_lookup_key, feature_timestamp_key)
    sides = _narrow(spine_df, feature_df, keys, timestamp_lookup_key, feature_timestamp_key, types)
    return _choose(*sides, keys)


def _choose(spine_times: DataFrame, feature_times: DataFrame, keys: list[str]) -> StrategyChoice:
    """``arrays`` while its pairs are at most ``PAIRS_PER_SORTED_ROW`` x the window's rows.

    The spine side is counted first. A key with ``s`` spine rows and ``f`` feature times
    makes ``s * f`` pairs and ``s + f`` rows to sort; while no key has more than ``m`` spine
    rows, ``s * f <= m * f <= m * (s + f)`` for every key, so with ``m`` at most the constant
    the pairs cannot exceed it times the rows: ``arrays``, without reading the feature side
    (at 1M x 10M the spine's count took 0.04-0.07 s, both sides' 0.33-0.42 s). Otherwise both
    sides are counted per key and compared."""
    counts = [
        side.groupBy(*keys).agg(F.count(F.lit(1)).alias(f"{_COUNT}{i}"))
        for i, side in enumerate((spine_times, feature_times))
    ]
    most = int(counts[0].agg(F.max(f"{_COUNT}0")).first()[0] or 0)
    if most <= PAIRS_PER_SORTED_ROW:
        return StrategyChoice("arrays", most)
    pairs, rows = (
        counts[0]
        .join(counts[1], keys)
        .agg(
            F.sum(F.col(f"{_COUNT}0") * F.col(f"{_COUNT}1")),
            F.sum(F.col(f"{_COUNT}0") + F.col(f"{_COUNT}1")),
        )
        .first()
    )
    pairs, rows = int(pairs or 0), int(rows or 0)
    cheaper = "arrays" if pairs <= PAIRS_PER_SORTED_ROW * rows else "window"
    return StrategyChoice(cheaper, most, pairs=pairs, rows=rows)


def _match_by_arrays(
    spine_side: DataFrame,
    feature_times: DataFrame,
    keys: list[str],
    lookback: dt.timedelta | None,
) -> DataFrame:
    """The spine rows, each with its match: the greatest of its key's feature times not after
    its time (and not before its lookback: the same row as dropping a latest match that is
    too old)."""

    def usable(ts: Column) -> Column:
        not_after = ts <= F.col(_TS)
        return not_after if lookback is None else not_after & (ts >= F.col(_TS) - F.lit(lookback))

    lists = feature_times.groupBy(*keys).agg(F.collect_list(_TS).alias(_TIMES))
    return (
        spine_side.join(lists, keys, "left")
        .withColumn(_MATCH, F.array_max(F.filter(_TIMES, usable)))
        .drop(_TIMES)
    )


def _match_by_window(
    spine_times: DataFrame,
    feature_times: DataFrame,
    keys: list[str],
    lookback: dt.timedelta | None,
    time_type: DataType,
) -> DataFrame:
    """Each distinct (key, spine time)'s match: the last feature time before it in its key's
    time order, dropped when it is older than the lookback."""
    spine_times = spine_times.distinct().select(
        "*",
        F.lit(1).alias(_KIND),
        F.lit(None).cast(time_type).alias(_MATCH),
    )
    feature_times = feature_times.select(
        *keys, _TS, F.lit(0).alias(_KIND), F.col(_TS).alias(_MATCH)
    )
    in_time_order = Window.partitionBy(*keys).orderBy(F.col(_TS), F.col(_KIND))
    upto_now = in_time_order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    matches = (
        spine_times.unionByName(feature_times)
        .select(*keys, _TS, _KIND, F.last(_MATCH, ignorenulls=True).over(upto_now).alias(_MATCH))
        .where(F.col(_KIND) == 1)
    )
    if lookback is not None:
        matches = matches.where(F.col(_MATCH) >= F.col(_TS) - F.lit(lookback))
    return matches
