"""point_in_time_join against a naive reference (Feast's find_latest_record) and edge cases.

Each comparison runs with both ways of finding matches (``arrays`` and ``window``), and with
the choice ``auto`` makes."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from ml_assets.lib.training_sets import PointInTimeJoinError, point_in_time_join
from ml_assets.lib.training_sets.checks import feature_windows_complete, one_row_per_spine_row
from ml_assets.lib.training_sets.pit import choose_strategy

T0 = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
ALL_STRATEGIES = pytest.mark.parametrize("strategy", ["arrays", "window", "auto"])


def h(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


SPINE = "user_id bigint, label_ts timestamp, label int"
FEATURES = "user_id bigint, feature_ts timestamp, a double, b string"


def naive(spine, features, lookback=None, defaults=None):
    """For each spine row: the single latest feature row of its key with ts <= t, taken whole."""
    out = []
    for key, t, label in spine:
        best = None
        if key is not None and t is not None:
            for fk, ts, a, b in features:
                available = ts is not None and ts <= t
                in_window = lookback is None or (available and t - ts <= lookback)
                if fk == key and available and in_window and (best is None or ts > best[1]):
                    best = (fk, ts, a, b)
        a, b = (best[2], best[3]) if best else (None, None)
        for name, default in (defaults or {}).items():
            if name == "a" and a is None:
                a = default
            if name == "b" and b is None:
                b = default
        out.append((key, t, label, a, b))
    return out


def run(spark, spine, features, **kwargs):
    result = point_in_time_join(
        spark.createDataFrame(spine, SPINE),
        spark.createDataFrame(features, FEATURES),
        lookup_key="user_id",
        timestamp_lookup_key="label_ts",
        feature_timestamp_key="feature_ts",
        **kwargs,
    )
    assert result.columns == ["user_id", "label_ts", "label", "a", "b"]
    rows = [
        (r.user_id, r.label_ts and r.label_ts.replace(tzinfo=dt.UTC), r.label, r.a, r.b)
        for r in result.collect()
    ]
    return sorted(rows, key=repr)


def expect(spine, features, **kwargs):
    lookback = kwargs.get("lookback_window")
    return sorted(naive(spine, features, lookback, kwargs.get("default_values")), key=repr)


FEATS = [
    (1, h(0), 1.0, "x"),
    (1, h(5), None, "y"),  # a null value: taken as it is, never filled from h(0)
    (1, h(10), 3.0, None),
    (2, h(3), 20.0, "z"),
    (None, h(1), 99.0, "n"),  # a null key matches nothing
]


@pytest.mark.parametrize(
    ("spine", "kwargs", "expected_ab"),
    [
        ([(1, h(5), 0)], {}, [(None, "y")]),  # equal timestamps count
        ([(1, h(4.9), 0)], {}, [(1.0, "x")]),
        ([(1, h(-1), 0)], {}, [(None, None)]),  # nothing before: nulls
        ([(3, h(20), 0)], {}, [(None, None)]),  # unknown key: nulls
        ([(None, h(20), 0)], {}, [(None, None)]),  # null key: nulls
        ([(1, h(7), 0)], {"lookback_window": dt.timedelta(hours=2)}, [(None, "y")]),  # edge
        ([(1, h(7.01), 0)], {"lookback_window": dt.timedelta(hours=2)}, [(None, None)]),
        ([(1, h(7), 0)], {"default_values": {"a": -1.0}}, [(-1.0, "y")]),  # genuine null too
        ([(1, h(8), 0), (1, h(8), 0)], {}, [(None, "y"), (None, "y")]),  # duplicates kept
    ],
)
@ALL_STRATEGIES
def test_edge_cases_match_databricks_semantics(spark, spine, kwargs, expected_ab, strategy):
    got = run(spark, spine, FEATS, strategy=strategy, **kwargs)
    assert [(r[3], r[4]) for r in got] == expected_ab
    assert got == expect(spine, FEATS, **kwargs)


@pytest.mark.parametrize("lookback_hours", [None, 0, 6, 48])
@ALL_STRATEGIES
def test_random_spines_match_the_naive_reference(spark, lookback_hours, strategy):
    rnd = random.Random(lookback_hours or 99)
    features = {(rnd.randint(1, 8), h(rnd.randint(0, 60))) for _ in range(120)}
    features = [
        (k, ts, rnd.choice([None, rnd.random()]), rnd.choice([None, "p", "q"]))
        for k, ts in sorted(features)
    ]
    spine = [(rnd.choice([None, *range(1, 10)]), h(rnd.randint(-5, 70)), i) for i in range(150)]
    spine += spine[:10]  # duplicate spine rows
    lookback = None if lookback_hours is None else dt.timedelta(hours=lookback_hours)
    kwargs = {"lookback_window": lookback, "default_values": {"b": "none"}}
    got = run(spark, spine, features, strategy=strategy, **kwargs)
    assert len(got) == len(spine)
    assert got == expect(spine, features, **kwargs)


@ALL_STRATEGIES
def test_composite_keys_and_selected_features(spark, strategy):
    spine = spark.createDataFrame(
        [(1, "a", h(5)), (1, "b", h(5))], "u bigint, s string, t timestamp"
    )
    feats = spark.createDataFrame(
        [(1, "a", h(1), 1.0, 10), (1, "b", h(6), 2.0, 20)],
        "u bigint, s string, ts timestamp, x double, y int",
    )
    got = point_in_time_join(
        spine,
        feats,
        lookup_key=["u", "s"],
        timestamp_lookup_key="t",
        feature_timestamp_key="ts",
        feature_names=["y"],
        strategy=strategy,
    )
    assert got.columns == ["u", "s", "t", "y"]
    assert sorted((r.s, r.y) for r in got.collect()) == [("a", 10), ("b", None)]


def test_bad_inputs_are_refused_with_the_problem_named(spark):
    spine = spark.createDataFrame([(1, h(1), 0)], SPINE)
    feats = spark.createDataFrame(FEATS, FEATURES)
    common = {"timestamp_lookup_key": "label_ts", "feature_timestamp_key": "feature_ts"}
    with pytest.raises(PointInTimeJoinError, match=r"\['customer_id'\] were missing"):
        point_in_time_join(spine, feats, lookup_key="customer_id", **common)
    with pytest.raises(PointInTimeJoinError, match="already exist in the spine"):
        point_in_time_join(
            spine.withColumn("a", spine.label), feats, lookup_key="user_id", **common
        )
    with pytest.raises(PointInTimeJoinError, match="not among the features"):
        point_in_time_join(spine, feats, lookup_key="user_id", default_values={"zz": 1}, **common)
    with pytest.raises(PointInTimeJoinError, match="timedelta"):
        point_in_time_join(spine, feats, lookup_key="user_id", lookback_window=3, **common)
    with pytest.raises(PointInTimeJoinError, match=r"strategy must be one of .*'sort'"):
        point_in_time_join(spine, feats, lookup_key="user_id", strategy="sort", **common)


@pytest.mark.parametrize("strategy", ["arrays", "window"])
def test_a_repeated_feature_row_breaks_the_precondition_and_the_row_check_catches_it(
    spark, strategy
):
    """Feature frames are unique on (key, time); a repeat that a spine row matches repeats
    that spine row, which is exactly what one_row_per_spine_row reports."""
    feats = [(1, h(0), 1.0, "x"), (1, h(0), 2.0, "y"), (2, h(0), 3.0, "z"), (2, h(5), 4.0, "w")]
    spine = spark.createDataFrame([(1, h(1), 0), (2, h(6), 0)], SPINE)
    joined = point_in_time_join(
        spine,
        spark.createDataFrame(feats, FEATURES),
        lookup_key="user_id",
        timestamp_lookup_key="label_ts",
        feature_timestamp_key="feature_ts",
        strategy=strategy,
    )
    outcome = one_row_per_spine_row(spine, joined, ["user_id", "label_ts", "label"])
    assert not outcome.passed and outcome.observed["rows_extra"] == 1
    # a repeat that no spine row matches is harmless
    assert run(spark, [(2, h(6), 0)], feats, strategy=strategy) == [(2, h(6), 0, 4.0, "w")]


def test_auto_compares_the_arrays_pairs_with_the_window_rows(spark):
    """Few spine rows per key take the arrays plan without counting the features; many spine
    rows of one key are counted against its history: a short one still takes the arrays,
    a long one (pairs > 32 x rows) the window, whose cost does not multiply the two."""
    short_spine = spark.createDataFrame([(1, h(i), 0) for i in range(3)] + [(2, h(1), 0)], SPINE)
    short_feats = spark.createDataFrame(
        [(1, h(i), 0.0, "x") for i in range(4)] + [(3, h(0), 0.0, "x")], FEATURES
    )
    columns = {
        "lookup_key": "user_id",
        "timestamp_lookup_key": "label_ts",
        "feature_timestamp_key": "feature_ts",
    }
    short = choose_strategy(short_spine, short_feats, **columns)
    assert (short.strategy, short.most_spine_rows_per_key, short.pairs) == ("arrays", 3, None)

    many_spine = spark.createDataFrame([(1, h(i), 0) for i in range(100)], SPINE)
    few = choose_strategy(many_spine, short_feats, **columns)  # 100 x 4 pairs, 104 rows
    assert (few.strategy, few.most_spine_rows_per_key, few.pairs, few.rows) == (
        "arrays",
        100,
        400,
        104,
    )

    long_spine = spark.createDataFrame([(1, h(i), 0) for i in range(100)], SPINE)
    long_feats = spark.createDataFrame([(1, h(i), 0.0, "x") for i in range(100)], FEATURES)
    long = choose_strategy(long_spine, long_feats, **columns)
    assert (long.strategy, long.pairs, long.rows) == ("window", 10_000, 200)
    # and both plans agree there, through the whole join
    pinned = [
        sorted(
            point_in_time_join(
                long_spine,
                long_feats,
                **columns,
                lookback_window=dt.timedelta(hours=2),
                strategy=strategy,
            ).collect()
        )
        for strategy in ("arrays", "window", "auto")
    ]
    assert pinned[0] == pinned[1] == pinned[2] and len(pinned[0]) == 100


def test_feature_windows_complete_counts_rows_whose_window_reaches_before_the_data(spark):
    start = dt.date(2026, 1, 1)
    day = dt.timedelta(days=1)
    midnight = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [  # (user, label_ts, matched feature_ts of a 30-day window)
        (1, midnight + 40 * day, midnight + 30 * day),  # window Jan 1..30: complete
        (2, midnight + 40 * day, midnight + 29 * day),  # window reaches Dec 31: truncated
        (3, midnight + 10 * day, midnight + 9 * day),  # truncated
        (4, midnight + 10 * day, None),  # no match: no window to judge
    ]
    df = spark.createDataFrame(rows, "user_id bigint, label_ts timestamp, activity_ts timestamp")
    bad = feature_windows_complete(df, "label_ts", {"activity_ts": 30}, start)
    assert not bad.passed
    assert bad.observed["activity_ts__truncated_rows"] == 2 and bad.observed["rows"] == 4
    assert bad.observed["first_truncated"].startswith("2026-01-11")
    assert "activity_ts (30-day window) in 2 rows" in bad.description
    good = feature_windows_complete(
        df.where("user_id in (1, 4)"), "label_ts", {"activity_ts": 30}, start
    )
    assert good.passed and good.observed["activity_ts__truncated_rows"] == 0
    assert "inside the data (from 2026-01-01)" in good.description


@pytest.mark.parametrize("strategy", ["arrays", "window"])
def test_timestamp_ntz_and_date_times_match_like_timestamps(spark, strategy):
    """Times of one timestamp type are compared as they are (timestamp_ntz with
    timestamp_ntz); a date against a timestamp is midnight of its day (the session is UTC),
    and a key of another type is cast to the spine's."""
    spine = [(1, h(30), 0), (1, h(50), 1), (2, h(30), 2)]
    feats = [(1, h(0), 1.0, "x"), (1, h(24), 2.0, "y"), (2, h(40), 3.0, "z")]
    lookback = dt.timedelta(hours=20)
    expected = expect(spine, feats, lookback_window=lookback)

    def naive_rows(rows):
        return [(r[0], r[1].replace(tzinfo=None), *r[2:]) for r in rows]

    ntz = point_in_time_join(
        spark.createDataFrame(
            naive_rows(spine), "user_id bigint, label_ts timestamp_ntz, label int"
        ),
        spark.createDataFrame(
            naive_rows(feats), "user_id bigint, feature_ts timestamp_ntz, a double, b string"
        ),
        lookup_key="user_id",
        timestamp_lookup_key="label_ts",
        feature_timestamp_key="feature_ts",
        lookback_window=lookback,
        strategy=strategy,
    )
    got = sorted(
        ((r.user_id, r.label_ts.replace(tzinfo=dt.UTC), r.label, r.a, r.b) for r in ntz.collect()),
        key=repr,
    )
    assert got == expected
    assert [r[3] for r in sorted(got, key=lambda r: r[2])] == [2.0, None, None]

    days = spark.createDataFrame(
        [(1, dt.date(2026, 1, 10), 1.0), (1, dt.date(2026, 1, 11), 2.0)],
        "user_id int, day date, a double",  # an int key against the spine's bigint
    )
    by_day = point_in_time_join(
        spark.createDataFrame([(1, h(23.5), 0), (1, h(24), 1)], SPINE),
        days,
        lookup_key="user_id",
        timestamp_lookup_key="label_ts",
        feature_timestamp_key="day",
        strategy=strategy,
    )
    assert sorted((r.label, r.a) for r in by_day.collect()) == [(0, 1.0), (1, 2.0)]
