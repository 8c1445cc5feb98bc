"""The classifier recipe's pure parts on small synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_assets.lib.models import classifier as cc
from ml_assets.lib.models.encoding import (
    FeatureEncoding,
    ModelInputError,
    records_frame,
    request_frame,
)
from ml_assets.lib.models.thresholds import MetricThreshold, ThresholdError, metric_breaches

ENCODING = FeatureEncoding(("x", "plan_tier"), {"plan_tier": ("free", "premium")})


def frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    tier = rng.choice(["free", "premium"], size=n)
    p = 1 / (1 + np.exp(-(2 * x + (tier == "free"))))
    return pd.DataFrame(
        {
            "x": x,
            "plan_tier": tier,
            "y": (rng.random(n) < p).astype(int),
            "split": np.repeat(
                ["train", "validation", "test"], [n // 2, n // 4, n - n // 2 - n // 4]
            ),
        }
    )


def test_encoding_fixes_column_order_and_levels_and_names_missing_or_non_numeric_columns():
    x = ENCODING.encode(
        pd.DataFrame({"plan_tier": ["premium", "gold", None], "x": [1, 2, None], "extra": 0})
    )
    assert x.dtype == np.float64 and x.shape == (3, 2)
    assert x[:, 0][:2].tolist() == [1.0, 2.0] and np.isnan(x[2, 0])
    assert x[0, 1] == 1.0 and np.isnan(x[1, 1]) and np.isnan(x[2, 1])  # unseen level: missing
    with pytest.raises(ModelInputError, match=r"\['x'\] were missing"):
        ENCODING.encode(pd.DataFrame({"plan_tier": ["free"]}))
    with pytest.raises(ModelInputError, match="Feature 'x' must be numeric; found object"):
        ENCODING.encode(pd.DataFrame({"plan_tier": ["free"], "x": ["many"]}))
    with pytest.raises(ModelInputError, match=r"Categorical columns \['tier'\]"):
        FeatureEncoding(("x",), {"tier": ("a",)})
    request = request_frame(pd.DataFrame({"plan_tier": ["free"], "x": [3]}), ENCODING)
    assert list(request.columns) == ["x", "plan_tier"] and request["x"].dtype == "float64"


def test_records_encode_to_the_same_matrix_as_their_request_frame_cell_for_cell():
    """The gateway's path (records straight to the matrix) against the frame path, on what a
    request can hold: known and unseen levels, missing values, a non-string where a level
    belongs, integers and bools as numbers, a column the record lacks."""
    records = [
        {"x": 1, "plan_tier": "premium"},
        {"x": 2.5, "plan_tier": "gold"},  # unseen level
        {"x": None, "plan_tier": None},
        {"x": float("nan"), "plan_tier": 1},  # not a string where a level belongs
        {"x": np.int64(7), "plan_tier": np.str_("free")},
        {"x": True, "plan_tier": "free", "extra": "ignored"},
        {"plan_tier": "premium"},  # x absent: missing
    ]
    fast = ENCODING.encode_records(records)
    slow = ENCODING.encode(records_frame(records, ENCODING))
    assert fast.dtype == np.float64 and fast.shape == (7, 2)
    assert np.array_equal(fast, slow, equal_nan=True)
    assert fast[:, 1][[0, 4, 5]].tolist() == [1.0, 0.0, 0.0] and np.isnan(fast[[1, 2, 3], 1]).all()
    assert ENCODING.encode_records([]).shape == (0, 2)
    with pytest.raises(ValueError):  # a value that is no number fails as on the frame path
        ENCODING.encode_records([{"x": "many", "plan_tier": "free"}])
    with pytest.raises(ValueError):
        records_frame([{"x": "many", "plan_tier": "free"}], ENCODING)


def test_a_booster_scores_the_same_from_a_pandas_frame_and_an_encoded_matrix():
    data = cc.splits(frame(), ENCODING, "y", "split")
    booster = cc.fit({"objective": "binary:logistic", "seed": 0}, data["train"], data["validation"])
    test = frame().query("split == 'test'")
    via_matrix = booster.predict(
        ENCODING.matrix(ENCODING.encode(test)), iteration_range=(0, booster.best_iteration + 1)
    )
    assert np.allclose(cc.predict(booster, ENCODING.encode(test)), via_matrix)


def test_a_split_with_one_class_is_refused():
    f = frame()
    f.loc[f.split == "test", "y"] = 0
    with pytest.raises(ModelInputError, match="test split .* both classes are needed"):
        cc.splits(f, ENCODING, "y", "split")


def test_search_reports_every_trial_and_is_reproducible_with_a_seed():
    data = cc.splits(frame(), ENCODING, "y", "split")
    seen = []
    first = cc.search(data["train"], data["validation"], n_trials=3, seed=1, on_trial=seen.append)
    again = cc.search(data["train"], data["validation"], n_trials=3, seed=1)
    assert [t.number for t in seen] == [0, 1, 2]
    assert first.best_params == again.best_params and first.best_value == again.best_value
    assert first.best_value == max(t.validation["validation_roc_auc"] for t in seen)
    booster = cc.fit(first.best_params, data["train"], data["validation"])
    scores = cc.predict(booster, data["test"].features)
    assert ((scores > 0) & (scores < 1)).all()
    metrics = cc.evaluate(data["test"].label, scores, 0.5, cc.BusinessCosts())
    assert metrics["roc_auc"] > 0.7 and 0 <= metrics["brier"] <= 1


def test_fits_sharing_a_splits_matrix_equal_fits_on_matrices_of_their_own():
    """A search builds each split's matrix once; later fits reuse its histogram index."""
    data = cc.splits(frame(2_000), ENCODING, "y", "split")
    assert data["train"].matrix is data["train"].matrix
    params = [
        {"objective": "binary:logistic", "tree_method": "hist", "seed": 3, "max_depth": depth}
        for depth in (2, 6, 3)
    ]
    shared = [cc.fit(p, data["train"], data["validation"]) for p in params]
    for p, booster in zip(params, shared, strict=True):
        fresh = cc.splits(frame(2_000), ENCODING, "y", "split")  # a new matrix each time
        alone = cc.fit(p, fresh["train"], fresh["validation"])
        assert alone.best_iteration == booster.best_iteration
        assert np.array_equal(
            cc.predict(alone, data["test"].features), cc.predict(booster, data["test"].features)
        )


def test_the_threshold_maximizes_net_value_and_thresholds_list_every_breach():
    y = np.array([1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.6, 0.55, 0.2, 0.1])
    costs = cc.BusinessCosts(customer_value=100, save_rate=0.5, offer_cost=10)
    assert cc.choose_threshold(y, scores, costs) == 0.6  # offer to the two churners only
    assert costs.net_value_per_user(y, scores >= 0.6) == pytest.approx((2 * 50 - 2 * 10) / 5)


def test_thresholds_list_every_breach_with_candidate_baseline_and_bound():
    thresholds = [
        MetricThreshold("roc_auc", threshold=0.75, max_regression=0.01),
        MetricThreshold("log_loss", threshold=0.5, greater_is_better=False, max_regression=0.0),
        MetricThreshold("brier", threshold=0.2, greater_is_better=False),
    ]
    candidate = {"roc_auc": 0.6, "log_loss": 0.9}
    assert [str(b) for b in metric_breaches(candidate, thresholds)] == [
        "roc_auc: candidate 0.6000, threshold >= 0.7500",
        "log_loss: candidate 0.9000, threshold <= 0.5000",
        "brier not computed: candidate -, threshold <= 0.2000 (computed: log_loss, roc_auc)",
    ]
    relative = metric_breaches(candidate, thresholds[:2], {"roc_auc": 0.62, "log_loss": 0.8})
    assert [str(b) for b in relative] == [
        "roc_auc: candidate 0.6000, threshold >= 0.7500",
        "roc_auc vs baseline: candidate 0.6000, baseline 0.6200, threshold >= 0.6100 "
        "(baseline - 0.01)",
        "log_loss: candidate 0.9000, threshold <= 0.5000",
        "log_loss vs baseline: candidate 0.9000, baseline 0.8000, threshold <= 0.8000 "
        "(baseline + 0.0)",
    ]
    # within the margin of the baseline: no relative breach
    within = [MetricThreshold("roc_auc", max_regression=0.01)]
    assert metric_breaches({"roc_auc": 0.615}, within, {"roc_auc": 0.62}) == []
    assert metric_breaches({"roc_auc": 0.605}, within) == []  # no baseline: nothing relative


def test_a_threshold_validates_itself():
    with pytest.raises(ThresholdError, match="sets neither threshold nor max_regression"):
        MetricThreshold("roc_auc")
    with pytest.raises(ThresholdError, match="max_regression = -0.1 is negative"):
        MetricThreshold("roc_auc", max_regression=-0.1)
    with pytest.raises(ThresholdError, match="threshold = nan is not a finite number"):
        MetricThreshold("roc_auc", threshold=float("nan"))
    with pytest.raises(ThresholdError, match="The baseline has no 'roc_auc'"):
        MetricThreshold("roc_auc", max_regression=0.0).breaches({"roc_auc": 0.7}, {"pr": 1.0})
