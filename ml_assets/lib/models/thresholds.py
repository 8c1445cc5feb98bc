"""Metric thresholds as validated data, and breaches that name every number involved.

After MLflow's ``models/evaluation/validation.py``: a ``MetricThreshold`` checks itself when it
is built, and a failed comparison produces a ``Breach`` naming the metric, the candidate's
value, the baseline's value (when there is one) and the threshold. One bound type serves the
model's own check (absolute thresholds) and the promotion gate (absolute, and relative to the
champion scored on the same test set).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class ThresholdError(ValueError):
    """A threshold that cannot be evaluated as written."""


@dataclass(frozen=True)
class MetricThreshold:
    """``threshold``: the candidate's value must be at least (``greater_is_better``) or at
    most this. ``max_regression``: the candidate may be worse than the baseline by at most this
    much, in the metric's units (0 means "not worse")."""

    metric: str
    threshold: float | None = None
    greater_is_better: bool = True
    max_regression: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.metric:
            problems.append("the metric name is empty")
        if self.threshold is None and self.max_regression is None:
            problems.append("it sets neither threshold nor max_regression")
        for name in ("threshold", "max_regression"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                problems.append(f"{name} = {value} is not a finite number")
        if self.max_regression is not None and self.max_regression < 0:
            problems.append(f"max_regression = {self.max_regression} is negative")
        if problems:
            raise ThresholdError(f"Threshold on {self.metric!r}: " + "; ".join(problems) + ".")

    @property
    def direction(self) -> str:
        return ">=" if self.greater_is_better else "<="

    def describe(self) -> str:
        parts = [] if self.threshold is None else [f"{self.direction} {_fmt(self.threshold)}"]
        if self.max_regression is not None:
            parts.append(f"at most {self.max_regression} worse than the baseline")
        return ", ".join(parts)

    def evidence(
        self, candidate: Mapping[str, float], baseline: Mapping[str, float] | None = None
    ) -> str:
        """The value against the bound, whether it holds or not (what a person reads beside a
        pass as well as a failure): the absolute bound, e.g. ``roc_auc 0.9132 >= 0.7500``;
        given a baseline, the relative one, e.g. ``roc_auc 0.9132 >= 0.9010 (baseline 0.9110
        - 0.01)``."""
        if self.metric not in candidate:
            return f"{self.metric} not computed"
        value = candidate[self.metric]
        if baseline is None:
            if self.threshold is None:
                return ""
            return f"{self.metric} {_fmt(value)} {self.direction} {_fmt(self.threshold)}"
        if self.max_regression is None or self.metric not in baseline:
            return ""
        base = baseline[self.metric]
        sign = "-" if self.greater_is_better else "+"
        bound = base - self.max_regression if self.greater_is_better else base + self.max_regression
        return (
            f"{self.metric} {_fmt(value)} {self.direction} {_fmt(bound)} (baseline {_fmt(base)} "
            f"{sign} {self.max_regression})"
        )

    def _worse(self, value: float, bound: float) -> bool:
        return value < bound if self.greater_is_better else value > bound

    def breaches(
        self, candidate: Mapping[str, float], baseline: Mapping[str, float] | None = None
    ) -> list[Breach]:
        if self.metric not in candidate:
            return [
                Breach(
                    f"{self.metric} not computed",
                    None,
                    None,
                    f"{self.describe()} (computed: {', '.join(sorted(candidate))})",
                )
            ]
        value = candidate[self.metric]
        found = []
        if self.threshold is not None and self._worse(value, self.threshold):
            found.append(
                Breach(self.metric, value, None, f"{self.direction} {_fmt(self.threshold)}")
            )
        if self.max_regression is not None and baseline is not None:
            if self.metric not in baseline:
                raise ThresholdError(
                    f"The baseline has no {self.metric!r} (it has {sorted(baseline)}): score the "
                    "baseline with the same metrics as the candidate."
                )
            base = baseline[self.metric]
            bound = (
                base - self.max_regression if self.greater_is_better else base + self.max_regression
            )
            if self._worse(value, bound):
                sign = "-" if self.greater_is_better else "+"
                found.append(
                    Breach(
                        f"{self.metric} vs baseline",
                        value,
                        base,
                        f"{self.direction} {_fmt(bound)} (baseline {sign} {self.max_regression})",
                    )
                )
        return found


@dataclass(frozen=True)
class Breach:
    """One failed condition: what was checked, the candidate's value, the baseline's value
    (None when the condition is absolute) and the bound it missed."""

    check: str
    candidate: object
    baseline: object
    threshold: str

    def __str__(self) -> str:
        text = f"{self.check}: candidate {_fmt(self.candidate)}"
        if self.baseline is not None:
            text += f", baseline {_fmt(self.baseline)}"
        return f"{text}, threshold {self.threshold}"

    def as_dict(self) -> dict[str, object]:
        return {
            "check": self.check,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "threshold": self.threshold,
        }


def metric_breaches(
    candidate: Mapping[str, float],
    thresholds: Sequence[MetricThreshold],
    baseline: Mapping[str, float] | None = None,
) -> list[Breach]:
    """Every breached threshold; relative bounds only when a baseline is given."""
    return [b for t in thresholds for b in t.breaches(candidate, baseline)]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)
