"""The churn classifier's pure parts on small synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_assets.lib.models import churn_classifier as cc

CATS = {"plan_tier": ["free", "premium"]}
FEATURES = ["x", "plan_tier"]


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


def test_prepare_fixes_column_order_and_levels_and_names_missing_columns():
    x = cc.prepare(pd.DataFrame({"plan_tier": ["premium", "gold"], "x": [1, 2]}), FEATURES, CATS)
    assert list(x.columns) == FEATURES and x["x"].dtype == "float64"
    assert list(x["plan_tier"].cat.categories) == ["free", "premium"]
    assert x["plan_tier"].isna().tolist() == [False, True]  # an unseen level is missing
    with pytest.raises(cc.ModelInputError, match=r"\['x'\] were missing"):
        cc.prepare(pd.DataFrame({"plan_tier": ["free"]}), FEATURES, CATS)


def test_a_split_with_one_class_is_refused():
    f = frame()
    f.loc[f.split == "test", "y"] = 0
    with pytest.raises(cc.ModelInputError, match="test split .* both classes are needed"):
        cc.splits(f, FEATURES, "y", "split", CATS)


def test_search_reports_every_trial_and_is_reproducible_with_a_seed():
    data = cc.splits(frame(), FEATURES, "y", "split", CATS)
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


def test_the_threshold_maximizes_net_value_and_thresholds_list_every_breach():
    y = np.array([1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.6, 0.55, 0.2, 0.1])
    costs = cc.BusinessCosts(customer_value=100, save_rate=0.5, offer_cost=10)
    assert cc.choose_threshold(y, scores, costs) == 0.6  # offer to the two churners only
    assert costs.net_value_per_user(y, scores >= 0.6) == pytest.approx((2 * 50 - 2 * 10) / 5)
    found = cc.breaches(
        {"roc_auc": 0.6, "log_loss": 0.9},
        [
            cc.MetricThreshold("roc_auc", minimum=0.75),
            cc.MetricThreshold("log_loss", maximum=0.5),
            cc.MetricThreshold("brier", maximum=0.2),
        ],
    )
    assert found == [
        "roc_auc = 0.6000 < minimum 0.75",
        "log_loss = 0.9000 > maximum 0.5",
        "brier: not computed (known: ['log_loss', 'roc_auc'])",
    ]
    with pytest.raises(ValueError, match="neither minimum nor maximum"):
        cc.MetricThreshold("roc_auc")
