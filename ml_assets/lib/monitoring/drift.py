"""Drift: Evidently's ``DataDriftPreset`` between a reference (the training data) and a current
window, read into plain numbers; and the debounced status a drift check reports.

Evidently picks a method per column (a p-value test on small data, a distance on large data);
a column drifts when its p-value falls below the threshold, or its distance reaches it. The
numbers are Evidently's own tests run column by column as its ``DataDriftTable`` runs them (the
legacy API; the same numbers as the table and as the ``DataDriftPreset``, which tests assert),
because the preset renders its plotly widgets while it computes (1.4 s a window) and the table
computes the data of its widgets (0.26 s a window, where the tests alone take 0.06 s). The
HTML report is the preset's, rendered only for a window whose report is kept (and without the
per-column metrics the preset computes and does not show: ``_drift_preset``).

The debounce follows mlops-stacks' monitoring: a window above the warning threshold warns; an
error needs the error threshold breached in ``k`` of the last ``n`` windows including the
latest, so one noisy window does not page anyone, and a persistent shift does.
"""

from __future__ import annotations

import html as html_text
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd

# Evidently is imported where drift is computed, not with this module: importing it takes about
# 3 s, and every process that loads the code location imports this module (the UI's code
# server among them), most of them never computing drift.


@dataclass(frozen=True)
class ColumnDrift:
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    share_drifted: float
    drifted_count: int
    columns: dict[str, ColumnDrift] = field(default_factory=dict)
    reference_rows: int = 0
    current_rows: int = 0
    render: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    _html: str | None = field(default=None, repr=False, compare=False)

    @property
    def html(self) -> str:
        """The HTML report, rendered on first use: rendering costs more than the metrics, and a
        backfill keeps only some windows' reports."""
        if self._html is None:
            self._html = self.render() if self.render is not None else ""
        return self._html

    @property
    def drifted_columns(self) -> list[str]:
        return sorted(c for c, d in self.columns.items() if d.drifted)


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    *,
    num_method: str | None = None,
) -> DriftResult:
    """Evidently's data drift over ``columns``; the HTML report is rendered when asked for.
    ``num_method`` (e.g. ``"wasserstein"``) fixes the numerical method instead of letting
    Evidently pick one by sample size."""
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise ValueError(
            f"Drift needs the columns {missing} in both the reference and current data."
        )
    if len(reference) == 0 or len(current) == 0:
        raise ValueError(
            f"Drift needs rows on both sides; reference has {len(reference)}, "
            f"current {len(current)}."
        )
    frames = {"current_data": current[list(columns)], "reference_data": reference[list(columns)]}
    with warnings.catch_warnings():  # the legacy namespace announces itself on every use
        warnings.simplefilter("ignore", DeprecationWarning)
        by_column = _column_drift(frames["reference_data"], frames["current_data"], num_method)
    drifted = sum(d.drifted for d in by_column.values())
    result = DriftResult(
        share_drifted=drifted / len(by_column),
        drifted_count=drifted,
        columns=by_column,
        reference_rows=len(reference),
        current_rows=len(current),
    )

    def render() -> str:
        from evidently import Report

        preset = _drift_preset()(columns=list(columns), num_method=num_method)
        return Report([preset]).run(**frames).get_html_str(as_iframe=False)

    result.render = render
    return result


@cache
def _drift_preset() -> type:
    """Evidently's ``DataDriftPreset`` without the per-column ``ValueDrift`` metrics it adds to
    the report: its HTML shows only the dataset drift and the drift table (``render`` takes
    them from the legacy metrics and drops the per-column widgets), yet each ``ValueDrift``
    builds its plotly figures first, about 0.6 of a 1.9 s render for 21 columns. The same
    HTML, as a test asserts against the preset itself."""
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    class DriftTablePreset(DataDriftPreset):
        def generate_metrics(self, context):
            return [m for m in super().generate_metrics(context) if not isinstance(m, ValueDrift)]

    return DriftTablePreset


def _column_drift(
    reference: pd.DataFrame, current: pd.DataFrame, num_method: str | None
) -> dict[str, ColumnDrift]:
    """Each column's test, as Evidently's ``DataDriftTable`` runs it (``get_one_column_drift``:
    the column's type recognized on both frames, the method picked by ``get_stattest`` for
    the options' method, infinities and missing values left out), without the distributions,
    correlations and scatter data the table computes for its widgets: 0.06 s a window where
    the table took 0.26 s (32 windows of 21 columns, demo scale)."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType
    from evidently.legacy.metrics import DataDriftTable
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.utils.data_operations import process_columns, recognize_column_type_

    options = DataDriftTable(columns=list(reference.columns), num_stattest=num_method).drift_options
    dataset_columns = process_columns(reference, ColumnMapping())
    both = pd.concat([reference, current])
    found = {}
    for column in reference.columns:
        kind = recognize_column_type_(dataset=both, column_name=column, columns=dataset_columns)
        if kind not in (ColumnType.Numerical, ColumnType.Categorical):
            raise ValueError(f"Drift of column {column!r} of type {kind.value} is not supported.")
        ref, cur = _finite(reference[column]), _finite(current[column])
        if ref.empty or cur.empty:
            side = "reference" if ref.empty else "current"
            raise ValueError(f"Column {column!r} has no values in the {side} data.")
        test = get_stattest(ref, cur, kind, options.get_feature_stattest_func(column, kind.value))
        outcome = test(ref, cur, kind, options.get_threshold(column, kind.value))
        found[column] = ColumnDrift(
            method=str(test.display_name),
            score=float(outcome.drift_score),
            threshold=float(outcome.actual_threshold),
            drifted=bool(outcome.drifted),
        )
    return found


def _finite(values: pd.Series) -> pd.Series:
    return values.replace([-np.inf, np.inf], np.nan).dropna()


@dataclass(frozen=True)
class DriftStatus:
    level: str  # "ok", "warn" or "error"
    description: str
    breaches_in_window: int


def debounced_status(
    shares: Sequence[float], *, warn_at: float, error_at: float, k: int = 2, n: int = 5
) -> DriftStatus:
    """``shares``: share of drifted columns per window, oldest first, the latest last."""
    if not shares:
        raise ValueError("No drift windows to judge.")
    if not 0 < warn_at <= error_at <= 1 or not 1 <= k <= n:
        raise ValueError(
            f"Expected 0 < warn_at <= error_at <= 1 and 1 <= k <= n; found warn_at={warn_at}, "
            f"error_at={error_at}, k={k}, n={n}."
        )
    latest, recent = shares[-1], list(shares[-n:])
    breaches = sum(share >= error_at for share in recent)
    text = (
        f"latest share of drifted columns {latest:.2f}; {breaches} of the last {len(recent)} "
        f"windows at or above {error_at}"
    )
    if latest >= error_at and breaches >= k:
        return DriftStatus("error", f"{text} (error: {k} needed)", breaches)
    if latest >= warn_at:
        return DriftStatus("warn", f"{text} (warning threshold {warn_at})", breaches)
    return DriftStatus("ok", f"{text} (warning threshold {warn_at})", breaches)


def with_header(report_html: str, title: str, facts: Mapping[str, str]) -> str:
    """The report with ``title`` as its page title and, first in its body, a header naming what
    it compares (window, reference table and version, model version, thresholds): Evidently's
    own report starts with its widgets and says none of that."""
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html_text.escape(k)}</th>"
        f"<td>{html_text.escape(v)}</td></tr>"
        for k, v in facts.items()
    )
    header = (
        "<header style='font-family:sans-serif;margin:1em'>"
        f"<h1 style='font-size:1.4em'>{html_text.escape(title)}</h1><table>{rows}</table></header>"
    )
    titled = re.sub(
        r"<title>.*?</title>",
        f"<title>{html_text.escape(title)}</title>",
        report_html,
        count=1,
        flags=re.DOTALL,
    )
    body = re.search(r"<body[^>]*>", titled)
    if body is None:  # not a whole page: the header goes first
        return header + titled
    return titled[: body.end()] + header + titled[body.end() :]
