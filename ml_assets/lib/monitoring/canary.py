"""A canary's (or a shadow's) verdict: the challenger's realised outcomes against the
champion's on the traffic each answered, by a bootstrap of the difference in log loss
(``quality.compare_log_loss``), with a minimum sample per arm before any verdict.

* **roll back** when the challenger is worse at the confidence level (the interval of
  challenger minus champion lies above 0);
* **promote** when it is not worse by more than ``margin`` (the whole interval lies below
  ``margin``: non-inferiority), which includes being better;
* **wait** otherwise, or while an arm has fewer than ``min_rows_per_arm`` matured rows. The
  minimum detectable difference says how far the sample is from a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ml_assets.lib.monitoring.quality import Comparison, compare_log_loss, quality


class CanaryLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_rows_per_arm: int = Field(
        500, ge=30, description="matured rows each arm needs before a verdict"
    )
    margin: float = Field(
        0.01, ge=0, le=1, description="log loss the challenger may lose and still be promoted"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="of the bootstrap interval")
    resamples: int = Field(2_000, ge=200, le=100_000, description="bootstrap resamples")


@dataclass(frozen=True)
class Arm:
    version: str
    rows: int
    log_loss: float | None
    roc_auc: float | None
    positive_rate: float | None


@dataclass(frozen=True)
class Verdict:
    decision: Literal["promote", "wait", "rollback"]
    reason: str
    champion: Arm
    challenger: Arm
    comparison: Comparison | None


def _arm(version: str, labels: np.ndarray, scores: np.ndarray) -> Arm:
    if len(labels) == 0:
        return Arm(version, 0, None, None, None)
    q = quality(labels, scores)
    return Arm(version, q.rows, q.log_loss, q.roc_auc, q.positive_rate)


def verdict(
    champion: tuple[str, np.ndarray, np.ndarray],
    challenger: tuple[str, np.ndarray, np.ndarray],
    limits: CanaryLimits,
    *,
    seed: int = 0,
) -> Verdict:
    """``champion`` and ``challenger`` are (version, realised labels, predicted
    probabilities) of the matured traffic each answered."""
    arms = [
        _arm(v, np.asarray(y, "float64"), np.asarray(p, "float64"))
        for v, y, p in (champion, challenger)
    ]
    short = [a for a in arms if a.rows < limits.min_rows_per_arm]
    if short:
        counts = ", ".join(f"v{a.version}: {a.rows}" for a in arms)
        return Verdict(
            "wait",
            f"Not enough matured outcomes for a verdict ({counts}; each arm needs "
            f"{limits.min_rows_per_arm}): keep the canary running.",
            *arms,
            None,
        )
    found = compare_log_loss(
        (champion[1], champion[2]),
        (challenger[1], challenger[2]),
        resamples=limits.resamples,
        confidence=limits.confidence,
        seed=seed,
    )
    interval = (
        f"challenger - champion log loss {found.difference:+.4f}, "
        f"{found.confidence:.0%} interval [{found.ci_low:+.4f}, {found.ci_high:+.4f}], "
        f"minimum detectable difference {found.min_detectable_difference:.4f}"
    )
    if found.ci_low > 0:
        return Verdict("rollback", f"The challenger is worse: {interval}.", *arms, found)
    if found.ci_high < limits.margin:
        return Verdict(
            "promote",
            f"The challenger is not worse by more than {limits.margin}: {interval}.",
            *arms,
            found,
        )
    return Verdict(
        "wait",
        f"Inconclusive at this sample: {interval}; keep the canary running.",
        *arms,
        found,
    )
