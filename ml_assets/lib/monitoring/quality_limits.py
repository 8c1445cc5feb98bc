"""Limits on a model's quality over realised outcomes, as validated data, and the diagnosis a
breach gets: a rollout regression (roll back) or gradual decay (retrain).

A window is judged on the champion's realised ROC AUC. It breaches when it falls below
``min_roc_auc`` or more than ``max_auc_drop`` below the version's own test ROC AUC, or when the
previous champion, scored on the same rows, does better by ``regression_margin``; the level is
debounced as drift's is (ERROR when ``k`` of the last ``n`` judged windows breach, the latest
included; a window with fewer than ``min_rows`` matured rows is not judged). On ERROR:

* **regression** when the previous champion, scored on the same window's rows, does better by
  at least ``regression_margin`` in the breached windows: the new version is the problem, and
  rolling back to the previous one is the remedy;
* **decay** otherwise (the previous version degrades as well, or there is none): the world
  moved, and retraining on recent data is the remedy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class QualityLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_roc_auc: float = Field(0.7, gt=0.5, le=1, description="floor on a window's ROC AUC")
    max_auc_drop: float = Field(
        0.05, gt=0, le=0.5, description="allowed drop below the version's test ROC AUC"
    )
    regression_margin: float = Field(
        0.02, gt=0, le=0.5, description="previous version better by this much: a regression"
    )
    min_rows: int = Field(200, ge=1, description="matured rows a window needs to be judged")
    k: int = Field(2, ge=1, description="breaching windows needed for ERROR ...")
    n: int = Field(5, ge=1, description="... among the last n judged windows (as drift)")

    @model_validator(mode="after")
    def _k_within_n(self) -> QualityLimits:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) breaches cannot be found in n ({self.n}) windows.")
        return self

    def floor(self, test_roc_auc: float | None) -> float:
        """The lowest ROC AUC a window may have for a version tested at ``test_roc_auc``."""
        if test_roc_auc is None:
            return self.min_roc_auc
        return max(self.min_roc_auc, test_roc_auc - self.max_auc_drop)


@dataclass(frozen=True)
class WindowQuality:
    """A window's realised quality of the champion and, scored on the same rows, of the
    previous champion (None when there is none)."""

    window: dt.date
    rows: int
    roc_auc: float | None
    previous_roc_auc: float | None = None


@dataclass(frozen=True)
class Diagnosis:
    level: Literal["ok", "warn", "error", "not_judged"]
    action: Literal["none", "rollback", "retrain"]
    cause: Literal["none", "regression", "decay"]
    floor: float
    judged: int  # windows with enough matured rows
    breaches: tuple[dt.date, ...]  # breaching windows among the last n judged
    description: str


def diagnose(
    windows: Sequence[WindowQuality], test_roc_auc: float | None, limits: QualityLimits
) -> Diagnosis:
    floor = limits.floor(test_roc_auc)
    judged = sorted(
        (w for w in windows if w.rows >= limits.min_rows and w.roc_auc is not None),
        key=lambda w: w.window,
    )
    if not judged:
        return Diagnosis(
            "not_judged",
            "none",
            "none",
            floor,
            0,
            (),
            f"No window has {limits.min_rows} matured rows with both outcomes yet: nothing "
            "to judge (outcomes arrive once each prediction's outcome window has passed).",
        )
    recent = judged[-limits.n :]

    def worse(w: WindowQuality) -> bool:
        return w.previous_roc_auc is not None and (
            w.previous_roc_auc - w.roc_auc >= limits.regression_margin  # type: ignore[operator]
        )

    def breaches(w: WindowQuality) -> bool:
        return w.roc_auc < floor or worse(w)  # type: ignore[operator]

    breached = [w for w in recent if breaches(w)]
    latest = judged[-1]
    latest_breached = breaches(latest)
    behind = (
        f", previous version {latest.previous_roc_auc:.4f} on the same rows"
        if latest.previous_roc_auc is not None
        else ""
    )
    summary = (
        f"latest window {latest.window}: ROC AUC {latest.roc_auc:.4f} on {latest.rows} rows"
        f"{behind}, floor {floor:.4f}; {len(breached)} of the last {len(recent)} judged "
        "windows breach"
    )
    if not latest_breached or len(breached) < limits.k:
        level = "warn" if latest_breached else "ok"
        return Diagnosis(
            level, "none", "none", floor, len(judged), tuple(w.window for w in breached), summary
        )
    compared = [w for w in breached if w.previous_roc_auc is not None]
    better = [w for w in compared if worse(w)]
    if compared and len(better) == len(compared):
        gaps = ", ".join(f"{w.window}: {w.previous_roc_auc:.4f} vs {w.roc_auc:.4f}" for w in better)
        return Diagnosis(
            "error",
            "rollback",
            "regression",
            floor,
            len(judged),
            tuple(w.window for w in breached),
            f"{summary}. A rollout regression: the previous version does better on the same "
            f"rows ({gaps}): roll back to it.",
        )
    why = (
        "the previous version is no better on the same rows"
        if compared
        else "there is no previous version to compare with"
    )
    return Diagnosis(
        "error",
        "retrain",
        "decay",
        floor,
        len(judged),
        tuple(w.window for w in breached),
        f"{summary}. Decay: {why}; retrain on recent data.",
    )
