"""FeatureLookup / build_training_set over real Delta tables, labels, splits, hashes, checks."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from ml_assets.lib.features.contracts import Feature, FeatureTableContract
from ml_assets.lib.lakehouse import Column
from ml_assets.lib.training_sets import (
    FeatureLookup,
    TrainingSetError,
    build_training_set,
    checks,
    content_hash,
)
from ml_assets.lib.training_sets.churn import CHURN, compute_churn_labels, realised_churn
from ml_assets.lib.training_sets.declaration import SplitCutoffs, assign_split, default_cutoffs
from ml_assets.lib.training_sets.labels import LabelConfig, observation_times
from ml_assets.lib.training_sets.purchase import PURCHASE

T0 = dt.datetime(2026, 2, 2)


def h(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def _contract(name: str, features: tuple[Feature, ...]) -> FeatureTableContract:
    return FeatureTableContract(
        name=name,
        entity_keys=("user_id",),
        timestamp_key="feature_ts",
        columns=(Column("user_id", "bigint"), Column("feature_ts", "timestamp")),
        features=features,
        owner="tests",
        refresh_cadence="daily",
        freshness_sla=dt.timedelta(days=1),
        description="test table",
    )


CLICKS = _contract(
    "main.test.clicks",
    (
        Feature("clicks", "bigint", "Clicks", default=0),
        Feature("ctr", "double", "Rate", null_policy="nullable"),
    ),
)
PLAN = _contract("main.test.plan", (Feature("plan", "string", "Plan"),))
CONTRACTS = {CLICKS.name: CLICKS, PLAN.name: PLAN}


@pytest.fixture
def tables(lakehouse, spark):
    clicks = [(1, h(0), 5, 0.5), (1, h(10), 7, None), (2, h(0), 1, 0.1)]
    lakehouse.overwrite(
        CLICKS.table_spec,
        spark.createDataFrame(
            clicks, "user_id bigint, feature_ts timestamp, clicks bigint, ctr double"
        ),
    )
    plans = [(1, h(-100), "free"), (1, h(5), "plus"), (2, h(-100), "free")]
    lakehouse.overwrite(
        PLAN.table_spec,
        spark.createDataFrame(plans, "user_id bigint, feature_ts timestamp, plan string"),
    )
    return lakehouse


def spine(spark, rows=None):
    rows = rows or [(1, h(10), 1), (1, h(10), 1), (1, h(4), 0), (2, h(30), 1), (3, h(1), 0)]
    return spark.createDataFrame(rows, "uid bigint, label_ts timestamp, churned int")


LOOKUPS = (
    FeatureLookup(
        CLICKS.name,
        "uid",
        "label_ts",
        lookback_window=dt.timedelta(hours=24),
        matched_timestamp_column="clicks_ts",
    ),
    FeatureLookup(PLAN.name, "uid", "label_ts", rename_outputs={"plan": "plan_then"}),
)


def test_lookups_join_each_table_point_in_time_with_contract_defaults(spark, tables):
    ts = build_training_set(spine(spark), LOOKUPS, "churned", tables=tables, contracts=CONTRACTS)
    rows = sorted(
        (r.uid, r.label_ts, r.clicks, r.ctr, r.clicks_ts, r.plan_then) for r in ts.df.collect()
    )
    assert rows == [
        (1, h(4), 5, 0.5, h(0), "free"),
        (1, h(10), 7, None, h(10), "plus"),  # equal time counts; a null ctr stays null
        (1, h(10), 7, None, h(10), "plus"),  # duplicate spine rows preserved
        (2, h(30), 0, None, None, "free"),  # beyond the 24 h lookback: default 0 for clicks
        (3, h(1), 0, None, None, None),  # unknown user
    ]
    assert ts.feature_columns == ("clicks", "ctr", "plan_then")
    assert ts.matched_timestamp_columns == {"clicks_ts": CLICKS.name}
    assert ts.table_versions == {CLICKS.name: 1, PLAN.name: 1}  # 0 is the creation


def test_pinned_versions_rebuild_the_old_rows_after_the_tables_moved_on(spark, tables):
    before = build_training_set(
        spine(spark), LOOKUPS, "churned", tables=tables, contracts=CONTRACTS
    )
    old_hash = content_hash(before.df)
    moved = spark.createDataFrame(
        [(2, h(29), 99, 0.9)], "user_id bigint, feature_ts timestamp, clicks bigint, ctr double"
    )
    tables.append(CLICKS.table_spec, moved)
    now = build_training_set(spine(spark), LOOKUPS, "churned", tables=tables, contracts=CONTRACTS)
    assert now.table_versions[CLICKS.name] == 2 and content_hash(now.df) != old_hash
    again = build_training_set(
        spine(spark),
        LOOKUPS,
        "churned",
        tables=tables,
        contracts=CONTRACTS,
        versions=before.table_versions,
    )
    assert content_hash(again.df) == old_hash


def test_empty_defaults_and_exclusions_are_honoured(spark, tables):
    lookups = (
        FeatureLookup(CLICKS.name, "uid", "label_ts", feature_names=["clicks"], default_values={}),
    )
    ts = build_training_set(
        spine(spark),
        lookups,
        "churned",
        exclude_columns=["label_ts"],
        tables=tables,
        contracts=CONTRACTS,
    )
    assert ts.df.columns == ["uid", "churned", "clicks"]
    assert sorted((r.uid, r.clicks) for r in ts.df.collect())[-1] == (3, None)


@pytest.mark.parametrize(
    ("lookup", "label", "message"),
    [
        (
            FeatureLookup(CLICKS.name, "uid", "label_ts", feature_names=["views"]),
            "churned",
            "asks for ['views'], which the table does not have",
        ),
        (
            FeatureLookup(CLICKS.name, ["uid", "label_ts"], "label_ts"),
            "churned",
            "the table is keyed by ['user_id']",
        ),
        (
            FeatureLookup(CLICKS.name, "user_id", "label_ts"),
            "churned",
            "but ['user_id'] were missing",
        ),
        (
            FeatureLookup(CLICKS.name, "uid", "label_ts", rename_outputs={"clicks": "churned"}),
            "churned",
            "use rename_outputs",
        ),
        (FeatureLookup(CLICKS.name, "uid", "label_ts"), "label", "label column 'label'"),
    ],
)
def test_bad_lookups_are_refused_with_the_problem_named(spark, tables, lookup, label, message):
    with pytest.raises(TrainingSetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_training_set(spine(spark), [lookup], label, tables=tables, contracts=CONTRACTS)


def test_content_hash_ignores_row_order_and_sees_every_change(spark):
    schema = "a bigint, b double, c string"
    rows = [(1, 1.5, "x"), (2, None, "y"), (3, 2.0, None)]
    base = content_hash(spark.createDataFrame(rows, schema))
    assert content_hash(spark.createDataFrame(rows[::-1], schema).repartition(3)) == base
    assert (
        content_hash(spark.createDataFrame([(1, 1.5, "x"), (2, None, "y"), (3, 2.5, None)], schema))
        != base
    )
    assert content_hash(spark.createDataFrame([*rows, rows[0]], schema)) != base
    assert content_hash(spark.createDataFrame(rows[:2], schema)) != base


DAILY = "user_id bigint, activity_date date, logins bigint, purchases bigint"


def test_labels_observe_active_users_weekly_with_a_whole_outcome_window(spark):
    first, last = dt.date(2026, 1, 1), dt.date(2026, 3, 10)  # a Thursday .. a Tuesday
    times = observation_times(first, last, LabelConfig())
    assert times[0] == dt.date(2026, 1, 5) and all(t.weekday() == 0 for t in times)
    assert times[-1] == dt.date(2026, 2, 9)  # + 29 days = 2026-03-10, the last day
    d = dt.date
    daily = [
        (1, d(2026, 1, 2), 1, 0),  # active before Jan 5; logs in on Jan 20: not churned then
        (1, d(2026, 1, 20), 1, 0),
        (2, d(2026, 1, 4), 0, 0),  # active (an event) but never logs in or buys again: churned
        (3, d(2026, 1, 5), 1, 0),  # first active ON Jan 5: not observed at Jan 5
        (4, d(2026, 1, 6), 0, 1),  # a purchase is engagement too
        (4, d(2026, 2, 10), 0, 1),  # the last day of the Jan 12 outcome window
        (5, d(2026, 1, 6), 1, 0),
        (5, d(2026, 2, 11), 1, 0),  # the first day after it
    ]
    labels = compute_churn_labels(spark.createDataFrame(daily, DAILY), first, last)
    got = {(r.user_id, r.label_ts.date()): r.churned for r in labels.collect()}
    assert got[(1, d(2026, 1, 5))] == 0
    assert got[(2, d(2026, 1, 5))] == 1
    assert (3, d(2026, 1, 5)) not in got and got[(3, d(2026, 1, 12))] == 1
    assert got[(4, d(2026, 1, 12))] == 0  # buys again on Feb 10, inside Jan 12 + 30 days
    assert got[(5, d(2026, 1, 12))] == 1  # logs in again on Feb 11, just outside
    assert got[(1, d(2026, 1, 26))] == 1  # last login Jan 20, none in Jan 26 .. Feb 24
    assert (1, d(2026, 2, 23)) not in got  # active within 30 days, but no whole outcome window
    with pytest.raises(TrainingSetError, match="Land more days"):
        compute_churn_labels(spark.createDataFrame(daily, DAILY), first, d(2026, 1, 20))


def test_labels_refuse_observation_times_whose_feature_windows_the_data_does_not_cover(spark):
    first, last = dt.date(2026, 1, 1), dt.date(2026, 3, 10)
    # 30 days of history needed: Jan 31 is the first day with them; its Monday is Feb 2
    assert observation_times(first, last, LabelConfig(), history_days=30) == [
        dt.date(2026, 2, 2),
        dt.date(2026, 2, 9),
    ]
    daily = [(1, dt.date(2026, 1, 2), 1, 0), (1, dt.date(2026, 2, 1), 1, 0)]
    rows = compute_churn_labels(
        spark.createDataFrame(daily, DAILY), first, last, history_days=30
    ).collect()
    # active on Jan 2 (observable on Jan 5..26: refused) and Feb 1
    assert {r.label_ts.date() for r in rows} == {dt.date(2026, 2, 2), dt.date(2026, 2, 9)}
    with pytest.raises(TrainingSetError, match=r"needs 60 days of history .*from 2026-03-02"):
        compute_churn_labels(spark.createDataFrame(daily, DAILY), first, last, history_days=60)


def test_realised_outcomes_of_scored_rows_agree_with_the_labels_and_wait_for_their_window(spark):
    d = dt.date
    daily = [
        (1, d(2026, 1, 2), 1, 0),
        (1, d(2026, 1, 20), 1, 0),
        (2, d(2026, 1, 4), 0, 0),
        (4, d(2026, 1, 6), 0, 1),
        (4, d(2026, 2, 10), 0, 1),
        (5, d(2026, 1, 6), 1, 0),
        (5, d(2026, 2, 11), 1, 0),
    ]
    frame = spark.createDataFrame(daily, DAILY)
    last = d(2026, 3, 10)
    labels = compute_churn_labels(frame, d(2026, 1, 1), last)
    scored = labels.select("user_id", "label_ts", F.lit(0.5).alias("churn_probability"))
    realised = realised_churn(frame, scored, last)
    assert realised.columns == ["user_id", "label_ts", "churn_probability", "churned"]
    expected = {(r.user_id, r.label_ts): r.churned for r in labels.collect()}
    assert {(r.user_id, r.label_ts): r.churned for r in realised.collect()} == expected
    # a score from Feb 20: its 30 days end Mar 21, after the data: not known yet, left out
    late = spark.createDataFrame(
        [(1, dt.datetime(2026, 2, 20)), (1, dt.datetime(2026, 2, 9))],
        "user_id bigint, label_ts timestamp",
    )
    assert [r.label_ts.date() for r in realised_churn(frame, late, last).collect()] == [
        d(2026, 2, 9)
    ]


def test_the_declared_history_is_the_longest_window_plus_its_lookback():
    assert CHURN.feature_windows == {"user_activity_feature_ts": 90}
    assert CHURN.history_days == 92  # a matched row may be 2 days older than label_ts
    assert PURCHASE.history_days == 92


def test_default_split_is_by_observation_time_and_cutoffs_are_validated(spark):
    days = [dt.date(2026, 1, 5) + dt.timedelta(weeks=i) for i in range(10)]
    cutoffs = default_cutoffs(days)
    assert (cutoffs.validation_start, cutoffs.test_start) == (days[6], days[8])
    df = assign_split(
        spark.createDataFrame(
            [(dt.datetime.combine(x, dt.time()),) for x in days], "label_ts timestamp"
        ),
        cutoffs,
        "label_ts",
    )
    assert [r.split for r in df.orderBy("label_ts").collect()] == ["train"] * 6 + [
        "validation"
    ] * 2 + ["test"] * 2
    with pytest.raises(TrainingSetError, match="at least 3 observation times"):
        default_cutoffs(days[:2])
    with pytest.raises(ValueError, match="must be before test_start"):
        SplitCutoffs(validation_start=days[3], test_start=days[3])


# -- the training-set checks, each passing on a good set and failing on a bad one ----------


def _good(spark):
    rows = [
        (1, h(24), 1, h(20), 0.9, "train"),
        (2, h(24), 0, h(0), 0.1, "train"),
        (1, h(48), 1, None, None, "validation"),
        (2, h(72), 0, h(71), 0.2, "test"),
    ]
    return spark.createDataFrame(
        rows,
        "user_id bigint, label_ts timestamp, churned int, m_ts timestamp, f double, split string",
    )


def test_no_future_feature_values_catches_the_future_and_stale_rows(spark):
    good = _good(spark)
    lookbacks = {"m_ts": dt.timedelta(hours=24)}
    assert checks.no_future_feature_values(good, "label_ts", lookbacks).passed
    future = good.withColumn(
        "m_ts",
        F.when(F.col("user_id") == 2, F.col("label_ts") + F.expr("INTERVAL 1 SECOND")).otherwise(
            F.col("m_ts")
        ),
    )
    outcome = checks.no_future_feature_values(future, "label_ts", lookbacks)
    assert not outcome.passed and outcome.observed["m_ts__future"] == 2
    stale = good.withColumn("m_ts", F.col("label_ts") - F.expr("INTERVAL 25 HOURS"))
    outcome = checks.no_future_feature_values(stale, "label_ts", lookbacks)
    assert not outcome.passed and outcome.observed["m_ts__beyond_lookback"] == 4
    assert checks.no_future_feature_values(stale, "label_ts", {"m_ts": None}).passed


def test_one_row_per_spine_row_catches_lost_and_repeated_rows(spark):
    good = _good(spark)
    keys = ["user_id", "label_ts", "churned"]
    spine_df = good.select(*keys)
    assert checks.one_row_per_spine_row(spine_df, good, keys).passed
    lost = checks.one_row_per_spine_row(spine_df, good.where("user_id = 1"), keys)
    assert not lost.passed and lost.observed["rows_missing"] == 2
    repeated = checks.one_row_per_spine_row(spine_df, good.unionByName(good.limit(1)), keys)
    assert not repeated.passed and repeated.observed["rows_extra"] == 1
    # a duplicated spine row must come back twice
    twice = spine_df.unionByName(spine_df.limit(1))
    assert not checks.one_row_per_spine_row(twice, good, keys).passed


def test_split_is_time_ordered_catches_overlap_and_empty_splits(spark):
    order = ("train", "validation", "test")
    good = _good(spark)
    assert checks.split_is_time_ordered(good, "label_ts", "split", order).passed
    overlap = good.withColumn(
        "split", F.when(F.col("user_id") == 2, "test").otherwise(F.col("split"))
    )
    outcome = checks.split_is_time_ordered(overlap, "label_ts", "split", order)
    assert not outcome.passed and "ends at" in outcome.description
    empty = good.where("split != 'validation'")
    assert (
        "empty splits ['validation']"
        in checks.split_is_time_ordered(empty, "label_ts", "split", order).description
    )


def test_a_feature_that_is_the_label_in_disguise_is_named(spark):
    rows = [
        (i, i % 2, float(i % 2) * 10 + (i % 7) / 10, (i * 37) % 11, "a" if i % 2 else "b")
        for i in range(400)
    ]
    df = spark.createDataFrame(
        rows, "user_id bigint, churned int, leak double, noise bigint, status string"
    )
    outcome = checks.no_single_feature_leak(
        df, "churned", ["leak", "noise", "status"], threshold=0.95
    )
    assert not outcome.passed and outcome.observed["leaking_features"] == ["leak", "status"]
    assert checks.no_single_feature_leak(df, "churned", ["noise"]).passed
    # reversed signals count as much as direct ones
    assert (
        checks.single_feature_aucs(df.toPandas().assign(neg=lambda x: -x.leak), "churned", ["neg"])[
            "neg"
        ]
        == 1.0
    )
