"""The churn training set on the tiny scale: lineage, rebuild by time travel, and each check
failing on a training set that leaks (current status, latest snapshot, lost rows, ...)."""

from __future__ import annotations

import shutil

import dagster as dg
from pyspark.sql import functions as F

from ml_assets.lib.features import user_activity, user_profile
from ml_assets.lib.raw import USERS
from ml_assets.lib.source import SCALES
from ml_assets.lib.training_sets import checks, content_hash
from ml_assets.lib.training_sets.churn import (
    CHURN,
    LABEL,
    LABEL_TS,
    LABELS,
    LOOKBACKS,
    MODEL_FEATURES,
    TRAINING_SET,
    Lineage,
    build_churn_training_set,
    rebuild_churn_training_set,
)
from ml_assets.lib.training_sets.users import PROFILE_MATCHED_TS
from ml_assets.programs.reporting import run_check_results
from ml_assets_tests.defs.conftest import evaluate_checks, materialization_metadata
from ml_assets_tests.test_definitions import EXPECTED_CHECKS

ASSET = "training_sets/churn_training_set"
TINY = SCALES["tiny"]
ACTIVITY = user_activity.CONTRACT.table_spec
PROFILE = user_profile.CONTRACT.table_spec


def test_the_training_set_passes_its_checks_and_records_lineage(ingested):
    _, result = ingested
    found = {
        c.check_name: c.passed
        for c in run_check_results(result)
        if c.asset_key.to_user_string() == ASSET
    }
    expected = {check for asset, check in EXPECTED_CHECKS if asset == ASSET}
    assert found == dict.fromkeys(expected, True)
    metadata = materialization_metadata(result, ASSET)
    lineage = Lineage.from_metadata(metadata["lineage"])
    assert lineage.table_versions == {
        "main.training_sets.churn_labels": 1,
        "main.features.user_activity": 1,
        "main.features.user_profile": 1,
    }
    assert metadata["content_hash"] == lineage.content_hash and len(lineage.content_hash) == 64
    assert metadata["rows_train"] > metadata["rows_validation"] > 0 and metadata["rows_test"] > 0
    assert 0 <= metadata["train_vs_test_drift_share"] <= 1 and metadata["train_vs_test_drifted"]
    assert metadata["match_rate_user_activity_feature_ts"] == 1.0  # labelled users are active
    assert set(metadata["dagster/column_lineage"].deps_by_column) >= {"events_7d", "plan_tier"}
    plans = metadata["join_plans"]  # six observation times per user: arrays, features uncounted
    assert set(plans) == {"user_activity", "user_profile"}
    assert all(
        p == {"plan": "arrays", "most_spine_rows_per_key": 6, "pairs": None, "rows": None}
        for p in plans.values()
    ), plans
    labels = materialization_metadata(result, "training_sets/churn_labels")
    assert labels["observation_times"] == 6 and 0.02 < labels["churn_rate"] < 0.5


def test_a_recorded_training_set_is_rebuilt_by_time_travel_after_the_tables_moved_on(
    ingested, home, resources
):
    lakehouse = resources["lakehouse"]
    lineage = Lineage.from_metadata(materialization_metadata(ingested[1], ASSET)["lineage"])
    assert content_hash(lakehouse.read(TRAINING_SET)) == lineage.content_hash
    # the feature tables move on: a corrected activity row and a new profile version
    activity = lakehouse.read(ACTIVITY)
    corrected = activity.orderBy("user_id", "feature_ts").limit(50)
    lakehouse.merge(ACTIVITY, corrected.withColumn("events_7d", F.col("events_7d") + 1))
    profile = lakehouse.read(PROFILE)
    lakehouse.overwrite(PROFILE, profile.withColumn("plan_tier", F.lit("premium")))
    now, _ = build_churn_training_set(lakehouse, cutoffs=lineage.cutoffs)
    assert content_hash(now.df) != lineage.content_hash
    _, rebuilt_hash = rebuild_churn_training_set(lakehouse, lineage)
    assert rebuilt_hash == lineage.content_hash


def _write(resources, df) -> None:
    resources["lakehouse"].overwrite(TRAINING_SET, df.select(*TRAINING_SET.column_names))


def test_a_join_of_the_latest_profile_snapshot_without_timestamps_is_caught(home, resources):
    lakehouse = resources["lakehouse"]
    profile = lakehouse.read(PROFILE)
    latest = profile.groupBy("user_id").agg(F.max("feature_ts").alias("feature_ts"))
    snapshot = latest.join(profile, ["user_id", "feature_ts"]).select(
        "user_id",
        "plan_tier",
        "country",
        "signup_ts",
        F.col("feature_ts").alias(PROFILE_MATCHED_TS),
    )
    training = lakehouse.read(TRAINING_SET).drop(
        "plan_tier", "country", "signup_ts", PROFILE_MATCHED_TS
    )
    _write(resources, training.join(snapshot, "user_id", "left"))
    found = evaluate_checks(home, ASSET)
    assert not found["no_future_feature_values"].passed
    assert found["no_future_feature_values"].metadata["user_profile_feature_ts__future"].value > 10
    assert not found["matches_reference_join"].passed
    assert found["one_row_per_spine_row"].passed and found["split_is_time_ordered"].passed


def test_reading_the_users_current_status_is_caught(resources):
    """The planted hazard: status is set after churn. Read as of now (the current row of the
    users history) instead of as of label_ts, the matched row is from the future."""
    lakehouse = resources["lakehouse"]
    current = (
        lakehouse.read(USERS)
        .where("is_current")
        .select("user_id", "status", F.col("valid_from").alias(PROFILE_MATCHED_TS))
    )
    leaky = lakehouse.read(TRAINING_SET).drop(PROFILE_MATCHED_TS).join(current, "user_id", "left")
    outcome = checks.no_future_feature_values(leaky, LABEL_TS, LOOKBACKS)
    assert not outcome.passed and outcome.observed["user_profile_feature_ts__future"] > 10
    leak = checks.no_single_feature_leak(leaky, LABEL, [*MODEL_FEATURES, "status"])
    # the strongest single feature is the status, and only when read from the future
    assert next(iter(leak.observed["top_features"])) == "status"
    as_of_label = lakehouse.read(USERS).alias("u")
    status_then = (
        lakehouse.read(TRAINING_SET)
        .alias("t")
        .join(
            as_of_label,
            (F.col("t.user_id") == F.col("u.user_id"))
            & (F.col("u.valid_from") <= F.col("t.label_ts"))
            & (F.col("u.valid_to").isNull() | (F.col("u.valid_to") > F.col("t.label_ts"))),
            "left",
        )
        .select("t.*", "u.status")
    )
    honest = checks.single_feature_aucs(
        status_then.select(LABEL, "status").toPandas(), LABEL, ["status"]
    )
    assert honest["status"] < 0.6 < leak.observed["top_features"]["status"]


def test_lost_and_repeated_rows_fail_one_row_per_spine_row_and_the_reference(home, resources):
    table = resources["lakehouse"].read(TRAINING_SET)
    first = table.orderBy("user_id", LABEL_TS).limit(1)
    _write(resources, table.where(F.col("user_id") % 7 != 0).unionByName(first))
    found = evaluate_checks(home, ASSET)
    assert not found["one_row_per_spine_row"].passed
    assert found["one_row_per_spine_row"].metadata["rows_missing"].value > 50
    assert found["one_row_per_spine_row"].metadata["rows_extra"].value == 1
    assert not found["matches_reference_join"].passed
    assert not found["key_unique"].passed


def test_labels_observed_before_the_longest_window_is_covered_fail_feature_windows_complete(
    home, resources
):
    """Labels computed without the declared history (the old way: from the data's second day)
    put rows in the training set whose 90-day features cover a few days."""
    lakehouse = resources["lakehouse"]
    good = evaluate_checks(home, ASSET)["feature_windows_complete"]
    assert good.passed and good.metadata["user_activity_feature_ts__truncated_rows"].value == 0
    assert good.metadata["data_start"].value == str(TINY.start_date)
    daily = lakehouse.read(CHURN.labels.source)
    everything = CHURN.labels.compute(daily, TINY.start_date, TINY.end_date, history_days=0)
    lakehouse.overwrite(LABELS, everything)
    training, _ = build_churn_training_set(lakehouse)
    _write(resources, training.df)
    check = evaluate_checks(home, ASSET)["feature_windows_complete"]
    assert not check.passed
    truncated = check.metadata["user_activity_feature_ts__truncated_rows"].value
    early = training.df.where(F.col(LABEL_TS) < F.lit("2026-01-03").cast("timestamp")).count()
    assert truncated == early > 100  # every row observed in the warm-up, and only those
    assert "reach before the data starts (2025-10-01)" in check.description
    assert "user_activity_feature_ts (90-day window)" in check.description


def test_a_changed_feature_value_fails_the_reference_join(home, resources):
    table = resources["lakehouse"].read(TRAINING_SET)
    _write(resources, table.withColumn("logins_30d", F.col("logins_30d") + (F.col("user_id") % 2)))
    found = evaluate_checks(home, ASSET)
    assert not found["matches_reference_join"].passed
    assert found["matches_reference_join"].metadata["rows_differing"].value > 20
    assert found["no_future_feature_values"].passed


def test_a_shuffled_split_fails_split_is_time_ordered(home, resources):
    table = resources["lakehouse"].read(TRAINING_SET)
    _write(
        resources,
        table.withColumn(
            "split", F.when(F.col("user_id") % 5 == 0, "test").otherwise(F.col("split"))
        ),
    )
    found = evaluate_checks(home, ASSET)
    assert not found["split_is_time_ordered"].passed
    assert "ends at" in found["split_is_time_ordered"].description


def test_a_feature_that_encodes_the_label_is_named_with_a_warning(home, resources):
    table = resources["lakehouse"].read(TRAINING_SET)
    _write(resources, table.withColumn("sessions_90d", F.col(LABEL).cast("long") * 100))
    check = evaluate_checks(home, ASSET)["no_single_feature_leak"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["leaking_features"].value == ["sessions_90d"]


def test_lineage_checks_fail_clearly_without_a_recorded_materialization(home):
    shutil.rmtree(home / "dagster_home")
    found = evaluate_checks(home, ASSET)
    for name in ("one_row_per_spine_row", "matches_reference_join"):
        assert not found[name].passed
        assert "No materialization of the training set" in found[name].description


def test_labels_are_unique_active_users_per_observation_time(resources):
    labels = resources["lakehouse"].read(LABELS)
    assert labels.count() == labels.select("user_id", LABEL_TS).distinct().count()
    weekdays = {r[0] for r in labels.select(F.dayofweek(LABEL_TS)).distinct().collect()}
    assert weekdays == {2}  # Monday in Spark's numbering


def test_label_checks_fail_on_an_impossible_label_and_a_repeated_observation(home, resources):
    lakehouse = resources["lakehouse"]
    spark = resources["spark"].get_session()
    first = lakehouse.read(LABELS).orderBy("user_id", LABEL_TS).limit(2).collect()
    lakehouse.append(LABELS, spark.createDataFrame(first[:1], LABELS.spark_schema))
    lakehouse.append(
        LABELS,
        spark.createDataFrame(first[1:], LABELS.spark_schema)
        .withColumn(LABEL_TS, F.col(LABEL_TS) + F.expr("INTERVAL 1 DAY"))
        .withColumn(LABEL, F.lit(2)),
    )
    found = evaluate_checks(home, "training_sets/churn_labels")
    assert not found["key_unique"].passed
    assert found["key_unique"].metadata["duplicate_keys"].value == 1
    assert not found["values_valid"].passed
    assert found["values_valid"].metadata["violations_churned_is_0_or_1"].value == 1
