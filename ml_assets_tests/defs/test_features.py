"""Feature tables materialized on the tiny scale: metadata, incremental merges, checks failing."""

from __future__ import annotations

import datetime as dt
import os
import time

import dagster as dg
from pyspark.sql import functions as F

from ml_assets.defs.features.assets import build_feature_assets
from ml_assets.defs.partitions import daily_partitions
from ml_assets.lib.features import user_activity, user_daily_activity, user_profile
from ml_assets.lib.source import SCALES
from ml_assets.lib.training_sets import content_hash
from ml_assets.programs.reporting import partition_metadata, run_check_results
from ml_assets_tests.defs.conftest import evaluate_checks, instance_at, materialization_metadata

ACTIVITY = user_activity.CONTRACT.table_spec
DAILY = user_daily_activity.CONTRACT.table_spec
PROFILE = user_profile.CONTRACT.table_spec


def test_feature_tables_materialize_with_every_check_passing_and_their_metadata(ingested):
    _, result = ingested
    failed = [
        (c.asset_key.to_user_string(), c.check_name)
        for c in run_check_results(result)
        if not c.passed and c.asset_key.path[0] == "features"
    ]
    assert failed == []
    daily = materialization_metadata(result, "features/user_daily_activity")
    activity = materialization_metadata(result, "features/user_activity")
    assert daily["partition_range"] == activity["partition_range"] == "2025-10-01..2026-03-11"
    assert activity["rows_in_range"] > daily["rows_in_range"] > 1_000  # a row per active day
    assert activity["delta_operation"] == "MERGE"
    assert activity["daily_rows_read_from"] == "2025-07-04"
    for key in ("features/user_daily_activity", "features/user_activity"):
        days = partition_metadata(result, key)  # each day its own rows and users
        table = materialization_metadata(result, key)
        assert (
            sum(d["dagster/partition_row_count"] for d in days.values()) == table["rows_in_range"]
        )
        assert len({d["distinct_user_id"] for d in days.values()}) > 10, key
    # a merge over a range: its row count is the run's, not claimed by any day
    activity_days = partition_metadata(result, "features/user_activity")
    assert "rows_written" not in activity and activity["rows_merged_in_run"] > 0
    assert all("rows_written" not in d for d in activity_days.values())
    daily_days = partition_metadata(result, "features/user_daily_activity")  # replaced per day
    assert all(d["rows_written"] == d["dagster/partition_row_count"] for d in daily_days.values())
    profile = materialization_metadata(result, "features/user_profile")
    assert profile["users"] > 350 and profile["dagster/row_count"] >= profile["users"]


def _materialize_activity(home, resources, day: str) -> dg.ExecuteInProcessResult:
    _, activity = build_feature_assets(
        daily_partitions(SCALES["tiny"].start_date, SCALES["tiny"].end_date)
    )
    with instance_at(home) as instance:
        return dg.materialize([activity], partition_key=day, resources=resources, instance=instance)


def test_a_new_day_merges_only_its_rows_and_rerunning_it_changes_nothing(home, resources):
    lakehouse = resources["lakehouse"]
    day = dt.date(2026, 3, 11)
    before = lakehouse.read(ACTIVITY)
    before_hash, version, total = content_hash(before), lakehouse.version(ACTIVITY), before.count()
    day_rows = before.where(F.col("feature_date") == day).count()
    lakehouse.replace_range(  # as if the last day had never been computed
        ACTIVITY, before.where("false"), column="feature_date", start=day, end=day
    )
    assert lakehouse.read(ACTIVITY).count() == total - day_rows
    for _ in range(2):
        result = _materialize_activity(home, resources, day.isoformat())
        assert result.success
        assert content_hash(lakehouse.read(ACTIVITY)) == before_hash
    metadata = materialization_metadata(result, "features/user_activity")
    assert metadata["dagster/partition_row_count"] == day_rows
    assert (
        lakehouse.version(ACTIVITY) == version + 2
    )  # a merge that changes nothing commits nothing


def test_feature_checks_fail_on_duplicates_bad_values_and_null_rates(home, resources):
    lakehouse = resources["lakehouse"]
    spark = resources["spark"].get_session()
    table = lakehouse.read(ACTIVITY)
    total = table.count()
    first = table.orderBy("user_id", "feature_ts").limit(40).collect()  # read before writing
    many = table.orderBy("user_id", "feature_ts").limit(total // 10).collect()
    rows = spark.createDataFrame(first, ACTIVITY.spark_schema)
    lakehouse.append(ACTIVITY, rows.limit(1))  # a duplicate (user_id, feature_ts)
    lakehouse.append(  # 40 rows with a negative count
        ACTIVITY,
        rows.withColumn("feature_ts", F.col("feature_ts") - F.expr("INTERVAL 1 SECOND")).withColumn(
            "logins_7d", F.lit(-1).cast("long")
        ),
    )
    lakehouse.append(  # 10 % without a last login: over the 5 % ceiling
        ACTIVITY,
        spark.createDataFrame(many, ACTIVITY.spark_schema)
        .withColumn("feature_ts", F.col("feature_ts") - F.expr("INTERVAL 2 SECONDS"))
        .withColumn("days_since_last_login", F.lit(None).cast("long")),
    )
    checks = evaluate_checks(home, "features/user_activity")
    assert not checks["key_unique"].passed
    assert checks["key_unique"].metadata["duplicate_keys"].value == 1
    assert not checks["values_valid"].passed
    assert checks["values_valid"].metadata["violations_logins_7d_constraint"].value == 40
    assert not checks["null_rates_within_ceilings"].passed
    assert "days_since_last_login" in checks["null_rates_within_ceilings"].description
    assert checks["schema_matches_contract"].passed and checks["keys_not_null"].passed


def test_feature_freshness_warns_when_newer_data_landed(home, resources):
    lakehouse = resources["lakehouse"]
    last = SCALES["tiny"].end_date
    lakehouse.replace_range(
        DAILY,
        lakehouse.read(DAILY).where("false"),
        column="activity_date",
        start=last - dt.timedelta(days=2),
        end=last,
    )
    newest = sorted((home / "landing/users").glob("date=*/changes.jsonl"))[-1]
    later = time.time() + 3600
    os.utime(newest, (later, later))
    daily = evaluate_checks(home, "features/user_daily_activity")["fresh"]
    assert not daily.passed and daily.severity == dg.AssetCheckSeverity.WARN
    assert daily.metadata["lag_hours"].value == 72.0
    assert evaluate_checks(home, "features/user_activity")["fresh"].passed


def test_a_stale_profile_fails_its_freshness_check(home, resources):
    lakehouse = resources["lakehouse"]
    cutoff = dt.datetime.combine(SCALES["tiny"].end_date - dt.timedelta(days=5), dt.time())
    lakehouse.overwrite(PROFILE, lakehouse.read(PROFILE).where(F.col("feature_ts") < F.lit(cutoff)))
    check = evaluate_checks(home, "features/user_profile")["fresh"]
    assert not check.passed and check.metadata["lag_hours"].value > 24 * 5
