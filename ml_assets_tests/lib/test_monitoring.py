"""The drift monitor's pure parts: which columns are comparable with the reference, the
status of every window as it was judged, and where the current breach started."""

from __future__ import annotations

import datetime as dt

import pyspark.sql.functions as F
import pytest

from ml_assets.lib.monitoring.limits import DriftLimits
from ml_assets.lib.monitoring.monitor import DriftInputError, breach_started, window_statuses
from ml_assets.lib.raw import backdated_changes
from ml_assets.lib.training_sets.churn import MODEL_FEATURES
from ml_assets_tests.churn import CHURN_MONITOR

comparable_columns = CHURN_MONITOR.comparable_columns

DAY = dt.date(2026, 3, 1)
LIMITS = {"warn_at": 0.3, "error_at": 0.4, "k": 2, "n": 5}


def test_a_window_longer_than_the_history_before_the_reference_is_left_out():
    kept, left_out = comparable_columns(dt.date(2026, 2, 2), dt.date(2026, 1, 1))  # 32 days
    assert {"events_7d", "sessions_30d", "plan_tier", "account_age_days"} <= set(kept)
    assert {"events_90d", "revenue_90d", "days_since_last_login", "events_30d_mom_change"} <= set(
        left_out
    )
    assert (
        "90-day window, but the reference starts 32 days after the data" in (left_out["events_90d"])
    )
    assert sorted(kept + list(left_out)) == sorted(MODEL_FEATURES)
    everything, none = comparable_columns(dt.date(2026, 6, 1), dt.date(2026, 1, 1))
    assert everything == list(MODEL_FEATURES) and none == {}


def test_each_window_is_judged_on_its_own_past_and_one_breach_keeps_its_first_window():
    shares = [0.1, 0.6, 0.1, 0.35, 0.55, 0.6, 0.7]
    history = [(DAY + dt.timedelta(days=i), s) for i, s in enumerate(shares)]
    statuses = window_statuses(list(reversed(history)), **LIMITS)  # order does not matter
    assert [s.status.level for s in statuses] == [
        "ok",
        "warn",  # one breach: not enough
        "ok",
        "warn",
        "error",  # the second breach in five windows
        "error",
        "error",
    ]
    assert breach_started(statuses) == DAY + dt.timedelta(days=4)
    assert breach_started(statuses[:4]) is None
    calm = window_statuses([*history, (DAY + dt.timedelta(days=7), 0.1)], **LIMITS)
    assert breach_started(calm) is None  # the breach ended; a new one would have a new start
    assert CHURN_MONITOR.statuses(history) == statuses  # the declared limits are these


def test_drift_limits_are_validated_data():
    assert DriftLimits().model_dump() == LIMITS
    with pytest.raises(ValueError, match=r"warn_at \(0.6\) must be at most error_at \(0.5\)"):
        DriftLimits(warn_at=0.6, error_at=0.5)
    with pytest.raises(ValueError, match=r"k \(6\) breaches cannot be found in n \(5\)"):
        DriftLimits(k=6, n=5)
    with pytest.raises(ValueError, match="greater than 0"):
        DriftLimits(warn_at=0)


@pytest.fixture
def users(spark):
    rows = [  # (user, valid_from, landing_date, change_type)
        (1, "2025-12-01 10:00:00", "2026-01-01", "signup"),  # the initial load: history
        (1, "2026-01-20 10:00:00", "2026-01-20", "plan_change"),
        (2, "2026-01-03 09:00:00", "2026-01-06", "country_change"),  # 3 days late: allowed
    ]
    return spark.createDataFrame(
        rows, "user_id bigint, valid_from string, landing_date string, change_type string"
    ).select(
        "user_id",
        F.to_timestamp("valid_from").alias("valid_from"),
        F.to_date("landing_date").alias("landing_date"),
        "change_type",
    )


def test_a_change_landing_weeks_after_the_time_it_claims_is_backdated(spark, users):
    assert backdated_changes(users, late_arrival_days=3).passed
    backdated = spark.createDataFrame(
        [(3, dt.datetime(2026, 1, 10, 8), dt.date(2026, 2, 4), "plan_change")],
        users.schema,
    )
    outcome = backdated_changes(users.unionByName(backdated), late_arrival_days=3)
    assert not outcome.passed
    assert outcome.observed["backdated_changes"] == 1
    assert outcome.observed["max_days_backdated"] == 25
    assert outcome.observed["by_change_type"] == {"plan_change": 1}
    assert "landed more than 3 days after the time they claim" in outcome.description


def test_a_lakehouse_monitor_that_does_not_fit_its_table_is_refused_with_every_problem():
    import dataclasses

    from ml_assets.lib.monitoring.lakehouse_monitor import MonitorDeclarationError
    from ml_assets_tests.churn import CHURN_MONITOR

    assert CHURN_MONITOR.lakehouse_monitor.problems() == []
    bad = dataclasses.replace(
        CHURN_MONITOR.lakehouse_monitor,
        timestamp_col="model_name",
        prediction_col="probability",
        granularities=("2 days",),
        problem_type="PROBLEM_TYPE_RANKING",
    )
    with pytest.raises(MonitorDeclarationError) as error:
        bad.body(output_schema="ml_dev.monitoring", assets_dir="/Workspace/x")
    message = str(error.value)
    assert "has 4 problem(s)" in message
    assert "timestamp_col='model_name' is string; expected one of timestamp" in message
    assert (
        "prediction_col='probability' is not a column of main.serving.churn_predictions" in message
    )
    assert (
        "problem_type='PROBLEM_TYPE_RANKING'" in message and "granularities=['2 days']" in message
    )


def test_a_drift_pass_before_its_inputs_exist_is_refused_naming_what_to_materialize(
    lakehouse, spark
):
    """The drift assets turn these into a Failure with the same message (the prediction
    drift's is run in ``defs/test_monitoring.py``)."""
    training_set = CHURN_MONITOR.model.training_set.table_name
    with pytest.raises(DriftInputError) as no_reference:
        CHURN_MONITOR.feature_windows(lakehouse, [DAY])
    assert str(no_reference.value) == (
        f"{training_set} does not exist: the drift reference is its test split. "
        "Materialize training_sets/churn_training_set first."
    )
    with pytest.raises(DriftInputError) as no_predictions:
        CHURN_MONITOR.newest_batch(lakehouse)
    assert str(no_predictions.value) == (
        f"{CHURN_MONITOR.predictions.name} does not exist: materialize "
        "serving/churn_predictions first."
    )
    predictions = CHURN_MONITOR.predictions  # the table, and not one batch in it
    lakehouse.overwrite(predictions, spark.createDataFrame([], predictions.spark_schema))
    with pytest.raises(DriftInputError, match="has no rows: no batch to compare. Materialize"):
        CHURN_MONITOR.newest_batch(lakehouse)
