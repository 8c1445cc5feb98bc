"""The model-quality diagnosis: debounced like drift, and a breach told apart as a rollout
regression (roll back) or decay (retrain)."""

from __future__ import annotations

import datetime as dt

import pytest

from ml_assets.lib.monitoring.quality_limits import QualityLimits, WindowQuality, diagnose

LIMITS = QualityLimits()  # floor max(0.7, test - 0.05); ERROR in 2 of the last 5 windows
DAY = dt.date(2026, 3, 2)


def weeks(*aucs, previous=None, rows=500):
    previous = previous or [None] * len(aucs)
    return [
        WindowQuality(DAY + dt.timedelta(weeks=i), rows, auc, before)
        for i, (auc, before) in enumerate(zip(aucs, previous, strict=True))
    ]


def test_good_windows_pass_and_one_bad_window_only_warns():
    assert diagnose(weeks(0.91, 0.90, 0.92), 0.92, LIMITS).level == "ok"
    one = diagnose(weeks(0.91, 0.90, 0.84), 0.92, LIMITS)
    assert (one.level, one.action) == ("warn", "none") and one.floor == pytest.approx(0.87)
    assert one.breaches == (DAY + dt.timedelta(weeks=2),)


def test_a_new_version_worse_than_the_previous_on_the_same_rows_is_a_regression():
    found = diagnose(weeks(0.91, 0.80, 0.79, previous=[None, 0.90, 0.91]), 0.92, LIMITS)
    assert (found.level, found.action, found.cause) == ("error", "rollback", "regression")
    assert "the previous version does better on the same rows" in found.description
    assert "0.9100 vs 0.7900" in found.description


def test_a_version_above_its_floor_but_behind_the_previous_one_is_still_a_regression():
    # the floor follows the version's own (worse) test score, so only the comparison with
    # the previous champion on the same rows can see it
    found = diagnose(weeks(0.84, 0.83, previous=[0.88, 0.87]), 0.85, LIMITS)
    assert found.floor == pytest.approx(0.8) and found.level == "error"
    assert (found.action, found.cause) == ("rollback", "regression")
    near = diagnose(weeks(0.84, 0.83, previous=[0.85, 0.84]), 0.85, LIMITS)  # within margin
    assert (near.level, near.action) == ("ok", "none")


def test_every_version_degrading_is_decay_and_asks_for_retraining():
    found = diagnose(weeks(0.91, 0.80, 0.79, previous=[None, 0.80, 0.795]), 0.92, LIMITS)
    assert (found.level, found.action, found.cause) == ("error", "retrain", "decay")
    assert "the previous version is no better" in found.description
    alone = diagnose(weeks(0.91, 0.80, 0.79), 0.92, LIMITS)
    assert (alone.action, alone.cause) == ("retrain", "decay")
    assert "no previous version" in alone.description


def test_windows_without_enough_matured_rows_are_not_judged():
    thin = diagnose(weeks(0.5, 0.5, rows=50), 0.92, LIMITS)
    assert (thin.level, thin.action, thin.judged) == ("not_judged", "none", 0)
    assert "200 matured rows" in thin.description
    one_class = diagnose([WindowQuality(DAY, 500, None)], 0.92, LIMITS)
    assert one_class.level == "not_judged"


def test_limits_are_validated_data():
    assert QualityLimits(min_roc_auc=0.8).floor(0.82) == pytest.approx(0.8)
    assert QualityLimits().floor(None) == 0.7
    with pytest.raises(ValueError, match=r"k \(6\) breaches cannot be found in n \(5\)"):
        QualityLimits(k=6)
    with pytest.raises(ValueError, match="greater than 0.5"):
        QualityLimits(min_roc_auc=0.4)
