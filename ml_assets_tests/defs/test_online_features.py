"""features/online_user_features on the tiny scale: incremental publishing, and the skew
check passing on a fresh store and failing on a stale store and on a store that computes
differently."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.defs.features.online import online_user_features
from ml_assets.lib.features import user_activity
from ml_assets.programs.reporting import run_check_results
from ml_assets_tests.defs.conftest import evaluate_checks, instance_at, materialization_metadata

ASSET = "features/online_user_features"
ACTIVITY = user_activity.CONTRACT.table_spec


def test_the_store_is_published_whole_then_incrementally_and_matches_offline(
    ingested, ingested_once, tmp_path
):
    home, result = ingested
    run_home, _ = ingested_once  # where the run wrote: the paths in its metadata
    metadata = materialization_metadata(result, ASSET)
    assert metadata["user_activity_inserted"] == metadata["user_activity_rows"] > 300
    assert metadata["user_profile_inserted"] == metadata["user_profile_rows"] > 350
    assert metadata["online_store"] == f"sqlite:///{run_home / 'online.db'}"
    (check,) = [c for c in run_check_results(result) if c.check_name == names.CHECK_ONLINE_OFFLINE]
    assert check.passed, check.description
    assert check.metadata["entities_sampled"].value == 200
    assert check.metadata["columns_compared"].value == 23


def test_republishing_unchanged_tables_writes_nothing(home, resources):
    with instance_at(home) as instance:
        again = dg.materialize([online_user_features], resources=resources, instance=instance)
    metadata = materialization_metadata(again, ASSET)
    assert metadata["user_activity_inserted"] + metadata["user_activity_updated"] == 0
    assert metadata["user_activity_unchanged"] == metadata["user_activity_rows"]
    assert metadata["user_profile_deleted"] == 0


def test_a_store_not_republished_after_the_features_changed_fails_the_skew_check(home, resources):
    lakehouse = resources["lakehouse"]
    newest = lakehouse.read(ACTIVITY).agg(F.max("feature_ts")).first()[0]
    changed = lakehouse.read(ACTIVITY).where(F.col("feature_ts") == F.lit(newest))
    lakehouse.merge(ACTIVITY, changed.withColumn("events_30d", F.col("events_30d") + 1))
    check = evaluate_checks(home, ASSET)[names.CHECK_ONLINE_OFFLINE]
    assert not check.passed
    assert "events_30d: online" in check.description
    published = check.metadata["user_activity_published_version"].value
    assert check.metadata["user_activity_current_version"].value == published + 1


def test_a_store_that_computes_differently_fails_the_skew_check(home):
    engine = sa.create_engine(f"sqlite:///{home / 'online.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE features__user_activity SET revenue_90d = revenue_90d * 1.1")
    engine.dispose()
    check = evaluate_checks(home, ASSET)[names.CHECK_ONLINE_OFFLINE]
    assert not check.passed and "revenue_90d: online" in check.description
