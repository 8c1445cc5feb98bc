"""Model quality once outcomes are known, and a canary's verdict: the numbers of Lakehouse
Monitoring's inference-log profile (ROC AUC, PR AUC, log loss, Brier score, positive rate,
count, calibration) computed from realised labels and predicted probabilities, and a bootstrap
comparison of two served versions on the traffic each received.

Plain numpy and scikit-learn: the assets that join predictions with outcomes call these per
window and model version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

EPSILON = 1e-15  # probabilities are clipped to [eps, 1 - eps] for the log loss, as sklearn does
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    rows: int
    mean_prediction: float
    observed_rate: float


@dataclass(frozen=True)
class Quality:
    """One group's quality. ``roc_auc`` and ``pr_auc`` are None when the group holds one
    class only (undefined, not zero)."""

    rows: int
    positives: int
    mean_prediction: float
    log_loss: float
    brier: float
    roc_auc: float | None
    pr_auc: float | None
    calibration: tuple[CalibrationBin, ...] = field(default=())

    @property
    def positive_rate(self) -> float:
        return self.positives / self.rows

    @property
    def calibration_error(self) -> float:
        """Expected calibration error: the row-weighted gap between predicted and observed."""
        return sum(b.rows * abs(b.mean_prediction - b.observed_rate) for b in self.calibration) / (
            self.rows
        )


def _validated(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype="float64")
    p = np.asarray(scores, dtype="float64")
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(
            f"Labels and predictions must be two 1-d arrays of one length; got shapes "
            f"{y.shape} and {p.shape}."
        )
    if len(y) == 0:
        raise ValueError("No rows: quality needs at least one prediction with its outcome.")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"Labels must be 0 or 1; found {sorted(set(y[~np.isin(y, (0, 1))]))[:5]}.")
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        raise ValueError(
            f"Predictions must be probabilities in [0, 1]; {int(bad.sum())} are not "
            f"(e.g. {p[bad][:3].tolist()})."
        )
    return y, p


def row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPSILON, 1 - EPSILON)
    return -(y * np.log(q) + (1 - y) * np.log(1 - q))


def quality(labels, scores, bins: int = CALIBRATION_BINS) -> Quality:
    """The profile of one group of (outcome, probability) pairs."""
    y, p = _validated(labels, scores)
    both = 0 < y.sum() < len(y)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    calibration = tuple(
        CalibrationBin(
            float(edges[b]),
            float(edges[b + 1]),
            int((which == b).sum()),
            float(p[which == b].mean()),
            float(y[which == b].mean()),
        )
        for b in range(bins)
        if (which == b).any()
    )
    return Quality(
        rows=len(y),
        positives=int(y.sum()),
        mean_prediction=float(p.mean()),
        log_loss=float(row_log_loss(y, p).mean()),
        brier=float(((p - y) ** 2).mean()),
        roc_auc=float(roc_auc_score(y, p)) if both else None,
        pr_auc=float(average_precision_score(y, p)) if both else None,
        calibration=calibration,
    )


@dataclass(frozen=True)
class Comparison:
    """Challenger minus champion in mean log loss (negative: the challenger is better), with
    a bootstrap confidence interval, and the smallest difference this sample could detect."""

    champion_rows: int
    challenger_rows: int
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    min_detectable_difference: float


def compare_log_loss(
    champion: tuple[object, object],
    challenger: tuple[object, object],
    *,
    resamples: int = 2_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Bootstrap (each arm resampled on its own, as the arms are independent traffic) of the
    difference in mean log loss. The minimum detectable difference is the one a two-sided
    test at ``1 - confidence`` finds with 80 % power: (z_{1-a/2} + z_{0.8}) times the
    bootstrap standard error."""
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1); got {confidence}.")
    losses = [row_log_loss(*_validated(*arm)) for arm in (champion, challenger)]
    rng = np.random.default_rng(seed)
    means = [
        np.array([rng.choice(loss, size=len(loss)).mean() for _ in range(resamples)])
        for loss in losses
    ]
    differences = means[1] - means[0]
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    z = {0.9: 1.6449, 0.95: 1.9600, 0.99: 2.5758}.get(round(confidence, 2), 1.96)
    return Comparison(
        champion_rows=len(losses[0]),
        challenger_rows=len(losses[1]),
        difference=float(losses[1].mean() - losses[0].mean()),
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        min_detectable_difference=float((z + 0.8416) * differences.std(ddof=1)),
    )
