"""Model quality on realised outcomes and the bootstrap comparison of two served versions,
against scikit-learn's own metrics and on samples with a known difference."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from ml_assets.lib.monitoring.quality import compare_log_loss, quality


def sample(n: int, sharpness: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes drawn from a true probability; the prediction is that probability blurred
    toward 0.5 by ``1 - sharpness`` (a worse model is a blurrier one)."""
    rng = np.random.default_rng(seed)
    truth = rng.beta(1, 4, n)
    y = (rng.random(n) < truth).astype(int)
    return y, 0.5 + sharpness * (truth - 0.5)


def test_quality_matches_sklearn_and_calibration_bins_add_up():
    y, p = sample(5_000, 1.0, seed=1)
    q = quality(y, p)
    assert q.rows == 5_000 and q.positives == int(y.sum())
    assert q.roc_auc == pytest.approx(roc_auc_score(y, p))
    assert q.log_loss == pytest.approx(log_loss(y, p))
    assert q.brier == pytest.approx(brier_score_loss(y, p))
    assert sum(b.rows for b in q.calibration) == 5_000
    assert q.calibration_error < 0.03  # the true probabilities are calibrated
    blurred = quality(y, 0.5 + 0.3 * (p - 0.5))
    assert blurred.calibration_error > 0.1 and blurred.log_loss > q.log_loss


def test_one_class_leaves_auc_undefined_and_bad_input_is_named():
    q = quality([0, 0, 0], [0.1, 0.2, 0.3])
    assert q.roc_auc is None and q.pr_auc is None and q.positive_rate == 0
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]; 1 are not"):
        quality([0, 1], [0.2, 1.5])
    with pytest.raises(ValueError, match="Labels must be 0 or 1"):
        quality([0, 2], [0.2, 0.5])
    with pytest.raises(ValueError, match="one length"):
        quality([0, 1, 1], [0.2, 0.5])


def test_a_worse_challenger_is_told_apart_and_equal_ones_are_not():
    champion = sample(4_000, 1.0, seed=2)
    worse = sample(4_000, 0.4, seed=3)
    same = sample(4_000, 1.0, seed=4)
    bad = compare_log_loss(champion, worse, resamples=500)
    assert bad.difference > 0 and bad.ci_low > 0  # the challenger loses more: significant
    even = compare_log_loss(champion, same, resamples=500)
    assert even.ci_low < 0 < even.ci_high  # no difference to find
    assert 0 < even.min_detectable_difference < bad.difference
    small = compare_log_loss(sample(200, 1.0, 5), sample(200, 1.0, 6), resamples=500)
    assert small.min_detectable_difference > 2 * even.min_detectable_difference  # fewer rows
