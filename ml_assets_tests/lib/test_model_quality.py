"""Model quality on delayed labels, the lib side: which predictions count (batch rows and the
inference log's answered records), which have matured, and the profile per window, source and
version with the previous champion's quality on the same rows."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.lib.monitoring import model_quality as mq
from ml_assets.lib.registry.store import Registry
from ml_assets.lib.serving.batch import held_out_from, scoring_times

DAILY = "user_id bigint, activity_date date, logins bigint, purchases bigint"
PREDICTIONS = (
    "user_id bigint, scored_at timestamp, churn_probability double, model_name string, "
    "model_version bigint, user_activity_version bigint, user_profile_version bigint"
)


def test_scoring_times_cover_the_days_the_champion_never_trained_on_once_per_version():
    times = [dt.datetime(2026, 3, d) for d in range(1, 11)]
    assert scoring_times(times, None) == [dt.datetime(2026, 3, 10)]  # the newest only
    since = scoring_times(times, dt.date(2026, 3, 7))
    assert since == [dt.datetime(2026, 3, d) for d in (7, 8, 9, 10)]
    # what this version already scored is not scored again; the newest always is
    done = [dt.datetime(2026, 3, d) for d in (7, 8, 10)]
    assert scoring_times(times, dt.date(2026, 3, 7), done) == [
        dt.datetime(2026, 3, 9),
        dt.datetime(2026, 3, 10),
    ]
    assert scoring_times([], dt.date(2026, 3, 7)) == []
    assert held_out_from({"ml_assets.window.test": "2026-02-09..2026-02-16"}) == dt.date(2026, 2, 9)
    assert held_out_from({}) is None
    assert held_out_from({"ml_assets.window.test": "garbage"}) is None


def _inference_log(spark, rows):
    return spark.createDataFrame(
        rows,
        "user_id bigint, feature_time timestamp, model_version string, prediction double, "
        "status_code int",
    )


def test_matured_predictions_from_both_sources_get_the_outcome_they_realised(spark):
    d, t = dt.date, dt.datetime
    daily = spark.createDataFrame(
        [
            (1, d(2026, 1, 5), 1, 0),  # user 1 comes back within 30 days of Jan 1: not churned
            (2, d(2025, 12, 30), 1, 0),  # user 2 never comes back: churned
            (3, d(2026, 3, 1), 1, 0),
        ],
        DAILY,
    )
    predictions = spark.createDataFrame(
        [
            (1, t(2026, 1, 1), 0.2, "m", 1, 1, 1),
            (2, t(2026, 1, 1), 0.7, "m", 1, 1, 1),
            (1, t(2026, 2, 20), 0.3, "m", 1, 1, 1),  # window ends after Mar 1: pending
        ],
        PREDICTIONS,
    )
    log = _inference_log(
        spark,
        [
            (2, t(2026, 1, 1), "1", 0.9, 200),
            (1, t(2026, 1, 1), "1", None, 400),  # refused: no prediction, not counted
            (None, t(2026, 1, 1), "1", 0.5, 200),  # no user: cannot be joined, not counted
        ],
    )
    scored = mq.scored_rows(CHURN_CLASSIFIER, predictions, log)
    assert scored.count() == 4
    # a (window, source, version) already in the metrics table is not read again
    profiled = spark.createDataFrame(
        [(d(2026, 1, 1), "inference_log", 1)],
        "window_start date, source string, model_version bigint",
    )
    assert mq.not_profiled(scored, profiled).count() == 3
    assert mq.not_profiled(scored, None).count() == 4
    rows = mq.matured(CHURN_CLASSIFIER, daily, scored)
    assert rows.attrs["outcomes_through"] == d(2026, 3, 1)
    got = {(r.source, r.user_id): r.churned for r in rows.itertuples()}
    assert got == {("batch", 1): 0, ("batch", 2): 1, ("inference_log", 2): 1}
    assert mq.scored_rows(CHURN_CLASSIFIER, None, None) is None


def test_profile_per_window_source_and_version_with_the_previous_version_on_the_same_rows():
    rng = np.random.default_rng(3)
    n = 400
    labels = rng.integers(0, 2, n)
    good = np.clip(labels * 0.6 + rng.uniform(0, 0.4, n), 0, 1)
    rows = pd.DataFrame(
        {
            "source": "batch",
            mq.WINDOW: [dt.date(2026, 2, 9)] * (n // 2) + [dt.date(2026, 2, 10)] * (n // 2),
            "model_version": 2,
            "prediction": rng.uniform(0, 1, n),  # v2 guesses
            "churned": labels,
        }
    )
    previous = pd.Series(good, index=rows.index)  # v1 knew
    out = mq.profile(
        CHURN_CLASSIFIER,
        rows,
        dt.date(2026, 3, 11),
        champion_version=2,
        previous=(1, previous),
        computed_at=dt.datetime(2026, 3, 12, tzinfo=dt.UTC),
    )
    assert [(r[mq.WINDOW], r["model_version"], r["rows"]) for r in out] == [
        (dt.date(2026, 2, 9), 2, 200),
        (dt.date(2026, 2, 10), 2, 200),
    ]
    for r in out:
        assert r["previous_version"] == 1 and r["previous_roc_auc"] > 0.95
        assert 0.3 < r["roc_auc"] < 0.7
        bins = json.loads(r["calibration"])
        assert sum(b["rows"] for b in bins) == 200
    table = pd.DataFrame(out)
    windows = mq.champion_windows(table, 2, "batch")
    assert [w.previous_roc_auc for w in windows] == [r["previous_roc_auc"] for r in out]
    curve = mq.pooled_calibration(table, 2)
    assert sum(b[2] for b in curve) == n and all(0 <= b[0] <= 1 for b in curve)
    # an inference-log group the previous version did not score gets no comparison, no error
    logged = rows.assign(source="inference_log")
    both = pd.concat([rows, logged], ignore_index=True)
    unscored = pd.Series(np.r_[good, np.full(n, np.nan)], index=both.index)
    mixed = mq.profile(
        CHURN_CLASSIFIER, both, dt.date(2026, 3, 11), champion_version=2, previous=(1, unscored)
    )
    assert [r["previous_version"] for r in mixed if r["source"] == "batch"] == [1, 1]
    assert [r["previous_version"] for r in mixed if r["source"] == "inference_log"] == [None] * 2
    # a version that is not the champion gets no comparison
    other = mq.profile(CHURN_CLASSIFIER, rows, dt.date(2026, 3, 11), champion_version=3)
    assert all(r["previous_version"] is None for r in other)


def test_a_label_without_a_realise_rule_is_refused_with_the_fix(spark):
    from dataclasses import replace

    labels = replace(CHURN_CLASSIFIER.training_set.labels, realise=None)
    model = replace(
        CHURN_CLASSIFIER, training_set=replace(CHURN_CLASSIFIER.training_set, labels=labels)
    )
    daily = spark.createDataFrame([(1, dt.date(2026, 1, 5), 1, 0)], DAILY)
    scored = mq.scored_rows(
        model, None, _inference_log(spark, [(1, dt.datetime(2026, 1, 1), "1", 0.5, 200)])
    )
    with pytest.raises(ValueError, match=r"declares no realise function.*Labels\(realise=...\)"):
        mq.matured(model, daily, scored)


def test_a_pass_before_any_prediction_is_refused_naming_what_to_materialize(lakehouse, tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(mq.QualityInputError) as refused:
        mq.profile_new_outcomes(lakehouse, Registry(store, store), CHURN_CLASSIFIER)
    assert str(refused.value) == (
        f"Nothing was predicted yet: neither {CHURN_CLASSIFIER.predictions_table} nor "
        f"{CHURN_CLASSIFIER.inference_log_table} exists. Materialize "
        f"{'/'.join(CHURN_CLASSIFIER.predictions_key)} (or serve traffic and ingest its log)."
    )


def test_a_canary_verdict_waits_for_its_sample_then_promotes_or_rolls_back():
    from ml_assets.lib.monitoring.canary import CanaryLimits, verdict

    rng = np.random.default_rng(5)
    n = 4_000
    y = rng.integers(0, 2, n).astype(float)
    sharp = np.clip(np.where(y == 1, 0.8, 0.2) + rng.normal(0, 0.05, n), 0.01, 0.99)
    blunt = np.full(n, 0.5)
    limits = CanaryLimits(min_rows_per_arm=500)
    few = verdict(("1", y[:100], sharp[:100]), ("2", y[:100], sharp[:100]), limits)
    assert few.decision == "wait" and few.comparison is None
    assert "each arm needs 500" in few.reason and few.challenger.rows == 100
    worse = verdict(("1", y[:2000], sharp[:2000]), ("2", y[2000:], blunt[2000:]), limits)
    assert worse.decision == "rollback" and worse.comparison.ci_low > 0
    better = verdict(("1", y[:2000], blunt[:2000]), ("2", y[2000:], sharp[2000:]), limits)
    assert better.decision == "promote" and better.comparison.ci_high < 0
    assert better.challenger.roc_auc > 0.9 and better.champion.roc_auc == 0.5
    with pytest.raises(ValueError, match="greater than or equal to 30"):
        CanaryLimits(min_rows_per_arm=3)


def test_a_shadow_is_routed_at_zero_percent_and_named_as_one():
    from ml_assets.lib.serving.endpoint import plan_endpoint, route_problems

    canary = plan_endpoint("churn", "main.models.churn", "1", "2", canary_percentage=10)
    assert canary.shares() == {"churn-1": 90, "churn-2": 10} and canary.shadows() == []
    shadow = plan_endpoint("churn", "main.models.churn", "1", "2", shadow=True)
    assert shadow.shares() == {"churn-1": 100, "churn-2": 0}
    assert shadow.shadows() == ["churn-2"] and route_problems(shadow) == []


def test_the_check_reports_the_worst_judged_source_and_a_thin_one_does_not_outweigh_it():
    from ml_assets.lib.monitoring.quality_limits import QualityLimits

    def row(day, source, auc, rows=500, previous=None):
        return {
            mq.WINDOW: dt.date(2026, 3, day),
            "source": source,
            "model_version": 2,
            "rows": rows,
            "roc_auc": auc,
            "previous_roc_auc": previous,
        }

    history = pd.DataFrame(
        [row(2, "batch", 0.91), row(3, "batch", 0.90), row(3, "inference_log", 0.5, rows=20)]
    )
    source, worst, levels = mq.judge(history, 2, 0.92, QualityLimits())
    assert (source, worst.level) == ("batch", "ok")
    assert levels == {"batch": "ok", "inference_log": "not_judged"}
    bad = pd.concat(
        [history, pd.DataFrame([row(4, "inference_log", 0.6), row(5, "inference_log", 0.6)])]
    )
    source, worst, _ = mq.judge(bad, 2, 0.92, QualityLimits())
    assert (source, worst.level, worst.action) == ("inference_log", "error", "retrain")
    regressed = pd.DataFrame(
        [row(2, "batch", 0.84, previous=0.9), row(3, "batch", 0.83, previous=0.9)]
    )
    series = mq.auc_series(regressed, 2, 1)
    assert series["v1 re-scored on v2's rows"] == [
        (dt.date(2026, 3, 2), 0.9),
        (dt.date(2026, 3, 3), 0.9),
    ]
    assert [v for _, v in series["v2 batch"]] == [0.84, 0.83]
