"""Drift monitoring of a declared model: the windows, the reference, and the drift metrics
tables (one row per window, as Databricks Lakehouse Monitoring keeps a drift metrics table).
A ``DriftMonitor`` is built from a ``ModelDeclaration`` (its features, training set, limits and
names); the factory in ``defs/monitoring`` turns it into assets and checks. It owns the
windowing and the report retention: a run keeps the HTML report of its latest window and of
every window at or above the warning level (a report is 4-5 MB).

A *window* is one day ``D`` of the calendar: the features of the users the model would score
at ``D + 1 00:00`` (the time of the day's user_activity rows), assembled exactly as batch
inference assembles them (``scoring_features``: the label's eligibility, the training set's
point-in-time lookups).

The *reference* is the training set's test split: the newest labelled rows the model was
evaluated on. Not the train split: the data starts on the calendar's first day with no history
before it, so the train split's 30- and 90-day windows hold only the first weeks of data, and
against it every long window "drifts" by construction (measured on demo: 67 % of the columns
drifted between the train split and the test split, whose dates are equally clean). Windows at
or before the reference's newest ``label_ts`` are the model's own data: they are recorded as
not compared.

For the same reason a windowed feature is compared only when its window fits in the data
before the reference's first ``label_ts``: a 90-day count over 40 days of history is not the
same quantity as one over 90 days. The columns left out are listed with the reason.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.lib.features import user_daily_activity
from ml_assets.lib.features.registry import CONTRACTS
from ml_assets.lib.lakehouse import Column, TableId, TableSpec
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.models.encoding import request_frame
from ml_assets.lib.monitoring.drift import (
    DriftResult,
    DriftStatus,
    debounced_status,
    drift_report,
    with_header,
)
from ml_assets.lib.monitoring.lakehouse_monitor import InferenceLogMonitor
from ml_assets.lib.monitoring.limits import DriftLimits
from ml_assets.lib.registry.store import Registry
from ml_assets.lib.serving.batch import (
    SCORED_AT,
    eligible_features,
    feature_versions,
    predictions_table,
)
from ml_assets.lib.training_sets.declaration import SPLIT
from ml_assets.lib.training_sets.lookups import TableReader
from ml_assets.lib.training_sets.users import ENTITY_KEY, LABEL_TS

REFERENCE_SPLIT = "test"
MAX_ROWS = 5_000  # rows per side: enough for stable distances; more only cost time
WINDOW_KEY = "window_date"
PREDICTION_METHOD = "wasserstein"  # normed by the reference's spread; drifted at >= 0.1


def sample(frame: pd.DataFrame, rows: int = MAX_ROWS, seed: int = 0) -> pd.DataFrame:
    """At most ``rows`` rows, the same ones for the same input (sorted by user first)."""
    ordered = frame.sort_values([c for c in (LABEL_TS, ENTITY_KEY) if c in frame.columns])
    if len(ordered) <= rows:
        return ordered.reset_index(drop=True)
    return ordered.sample(rows, random_state=seed).reset_index(drop=True)


def window_time(day: dt.date) -> dt.datetime:
    """Feature time of a day's window: the end of the day, when its user_activity rows are."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


@dataclass(frozen=True)
class WindowComparison:
    """The windows of one feature-drift run: a row per day for the drift metrics table, and
    the compared ones' results with the path of the report kept (None: not kept)."""

    rows: list[dict[str, object]]
    results: dict[dt.date, tuple[DriftResult, str | None]]
    empty: list[str]  # days after the reference period with no eligible user


class DriftInputError(ValueError):
    """A table the monitor reads does not exist yet: the message names what to materialize."""


@dataclass(frozen=True)
class FeatureWindows:
    """What a feature-drift pass compares: the reference (the training set's test split,
    sampled), the columns whose window fits before it (and why the others are left out),
    and the eligible users' features of every window after the reference period."""

    reference: pd.DataFrame
    reference_label: str  # "<training set> v<version>, test split to <last label day>"
    reference_end: dt.date
    columns: list[str]
    left_out: dict[str, str]
    feature_versions: dict[str, int | None]
    current: pd.DataFrame


@dataclass(frozen=True)
class NewestBatch:
    """The newest batch of predictions: its scoring time, the version that scored it, its rows."""

    scored_at: dt.datetime
    version: int
    rows: pd.DataFrame


@dataclass(frozen=True)
class ReferenceScores:
    """A model version's scores on the reference rows, and what those rows are."""

    scores: np.ndarray
    label: str  # "<training set> v<version>, test split"


def _asset_of(table_name: str) -> str:
    table = TableId.parse(table_name)
    return f"{table.schema}/{table.table}"


@dataclass(frozen=True)
class DriftMonitor:
    """Feature and prediction drift of one declared model against its training reference."""

    model: ModelDeclaration

    @property
    def limits(self) -> DriftLimits:
        return self.model.drift_limits

    @property
    def features(self) -> tuple[str, ...]:
        return self.model.training_set.model_features

    @cached_property
    def predictions(self) -> TableSpec:
        return predictions_table(self.model)

    @cached_property
    def feature_drift(self) -> TableSpec:
        return TableSpec(
            name=TableId(names.CATALOG, names.MONITORING, f"{self.model.stem}_feature_drift"),
            columns=(
                Column(WINDOW_KEY, "date", False, "The day whose features were compared"),
                Column("feature_ts", "timestamp", False, "Feature time of the window (next 00:00)"),
                Column("compared", "boolean", False, "False: inside the reference period"),
                Column("share_drifted", "double", True, "Share of the columns that drifted"),
                Column("drifted_count", "int", True, "Columns that drifted"),
                Column("columns_compared", "int", False, "Columns compared"),
                Column("drifted_columns", "string", True, "Comma-separated drifted columns"),
                Column("column_scores", "string", True, "JSON: column -> method, score, threshold"),
                Column("reference", "string", False, "Reference table, version and split"),
                Column("reference_rows", "bigint", False, "Reference rows compared (sampled)"),
                Column("current_rows", "bigint", False, "Window rows compared (sampled)"),
                Column("report_path", "string", True, "Evidently HTML report, when kept"),
                Column("computed_at", "timestamp", False, "When this row was computed"),
            ),
            primary_key=(WINDOW_KEY,),
            description=f"Feature drift of {self.model.name}'s inputs: one row per daily window "
            "against the training reference (Evidently DataDriftPreset).",
            owner=self.model.training_set.owner,
        )

    @cached_property
    def prediction_drift(self) -> TableSpec:
        output = self.model.output
        return TableSpec(
            name=TableId(names.CATALOG, names.MONITORING, f"{self.model.stem}_prediction_drift"),
            columns=(
                Column("scored_at", "timestamp", False, "Batch scoring time compared"),
                Column("model_version", "bigint", False, "Version whose scores were compared"),
                Column("method", "string", False, "Evidently's drift method"),
                Column("score", "double", False, "Drift score (p-value or distance)"),
                Column("threshold", "double", False, "Threshold of the method"),
                Column("drifted", "boolean", False, "Whether the score distribution drifted"),
                Column("reference_mean", "double", False, f"Mean {output} on the reference"),
                Column("current_mean", "double", False, f"Mean {output} of the batch"),
                Column("reference_rows", "bigint", False, "Reference rows"),
                Column("current_rows", "bigint", False, "Batch rows"),
                Column("report_path", "string", False, "Evidently HTML report"),
                Column("computed_at", "timestamp", False, "When this row was computed"),
            ),
            primary_key=("scored_at", "model_version"),
            description=f"Prediction drift of {self.model.name}: the batch scores against the "
            "model's scores on its reference rows.",
            owner=self.model.training_set.owner,
        )

    @cached_property
    def lakehouse_monitor(self) -> InferenceLogMonitor:
        """On Databricks, Lakehouse Monitoring also watches the batch predictions (its own
        profile and drift metrics tables and dashboard; see lib/monitoring/lakehouse_monitor)."""
        return InferenceLogMonitor(
            table=self.predictions,
            timestamp_col=SCORED_AT,
            model_id_col="model_version",
            prediction_col=self.model.output,
            granularities=("1 day",),
        )

    def comparable_columns(
        self, reference_start: dt.date, data_start: dt.date
    ) -> tuple[list[str], dict[str, str]]:
        """The model features whose window fits between ``data_start`` and the reference's
        first ``label_ts``; and, for the others, why they are left out."""
        windows = {
            f.name: int(f.window.removesuffix("d"))
            for table in self.model.training_set.feature_tables
            for f in CONTRACTS[table].features
            if f.window is not None
        }
        history = (reference_start - data_start).days
        kept, left_out = [], {}
        for column in self.features:
            days = windows.get(column, 0)
            if days > history:
                left_out[column] = (
                    f"{days}-day window, but the reference starts {history} days after the data"
                )
            else:
                kept.append(column)
        return kept, left_out

    def reference(self, tables: TableReader) -> tuple[pd.DataFrame, int]:
        """The reference rows (``reference_rows``) and the training set's version read."""
        training_set = self.model.training_set
        version = tables.version(training_set.table)
        if version is None:
            raise DriftInputError(
                f"{training_set.table_name} does not exist: the drift reference is its "
                f"{REFERENCE_SPLIT} split. Materialize {_asset_of(training_set.table_name)} first."
            )
        return self.reference_rows(tables.read(training_set.table, version=version)), version

    def feature_windows(self, tables: TableReader, days: Sequence[dt.date]) -> FeatureWindows:
        """The reference, the comparable columns and the features of the windows in ``days``
        after the reference period (at the feature tables' current versions, recorded)."""
        reference, version = self.reference(tables)
        reference_end = pd.Timestamp(reference[LABEL_TS].max()).date()
        daily = tables.read(user_daily_activity.CONTRACT.table_spec)
        data_start = daily.agg(F.min("activity_date")).first()[0]
        reference_start = pd.Timestamp(reference[LABEL_TS].min()).date()
        columns, left_out = self.comparable_columns(reference_start, data_start)
        versions = feature_versions(tables)
        current = self.window_features(tables, [d for d in days if d >= reference_end], versions)
        label = f"{self.model.training_set.table_name} v{version}, {REFERENCE_SPLIT} split to "
        return FeatureWindows(
            reference=reference,
            reference_label=label + str(reference_end),
            reference_end=reference_end,
            columns=columns,
            left_out=left_out,
            feature_versions=versions,
            current=current,
        )

    def newest_batch(self, tables: TableReader) -> NewestBatch:
        """The newest scoring time of the predictions table and the rows the newest version
        scored then."""
        predictions, asset = self.predictions, "/".join(self.model.predictions_key)
        if tables.version(predictions) is None:
            raise DriftInputError(f"{predictions.name} does not exist: materialize {asset} first.")
        rows = tables.read(predictions)
        newest = rows.agg(F.max(SCORED_AT)).first()[0]
        if newest is None:
            raise DriftInputError(
                f"{predictions.name} has no rows: no batch to compare. Materialize {asset} "
                "for a day with eligible users."
            )
        batch = rows.where(F.col(SCORED_AT) == F.lit(newest)).toPandas()
        version = int(batch["model_version"].max())
        return NewestBatch(newest, version, batch[batch["model_version"] == version])

    def reference_scores(
        self, tables: TableReader, registry: Registry, version: int
    ) -> ReferenceScores:
        """The registered model ``version``'s scores on the reference rows: what the newest
        batch's scores (by the same version) are compared with."""
        reference, ts_version = self.reference(tables)
        scorer = registry.load(registry.full_name(self.model.registered_model), version)
        scores = scorer.predict(request_frame(reference, self.model.encoding))
        label = f"{self.model.training_set.table_name} v{ts_version}, {REFERENCE_SPLIT} split"
        return ReferenceScores(np.asarray(scores, "float64"), label)

    def reference_rows(self, training_set: DataFrame) -> pd.DataFrame:
        """The reference: the test split's model features (sampled), with ``label_ts``."""
        rows = training_set.where(F.col(SPLIT) == REFERENCE_SPLIT).select(
            ENTITY_KEY, LABEL_TS, *self.features
        )
        frame = rows.toPandas()
        if frame.empty:
            raise ValueError(
                f"The training set has no {REFERENCE_SPLIT!r} rows to use as the drift "
                f"reference: materialize {self.model.training_set.table_name} first."
            )
        return sample(frame)

    def window_features(
        self, tables: TableReader, days: Sequence[dt.date], versions: Mapping[str, int]
    ) -> pd.DataFrame:
        """The model's features of the eligible users of every window in ``days``, in one
        point-in-time join, with ``window_date``."""
        if not days:
            return pd.DataFrame(columns=[WINDOW_KEY, ENTITY_KEY, *self.features])
        times = [window_time(d) for d in days]
        frame = (
            eligible_features(tables, times, versions)
            .select(ENTITY_KEY, LABEL_TS, *self.features)
            .withColumn(WINDOW_KEY, F.date_sub(F.to_date(LABEL_TS), 1))
            .toPandas()
        )
        frame[WINDOW_KEY] = pd.to_datetime(frame[WINDOW_KEY]).dt.date
        return frame

    def compare_windows(
        self,
        reference: pd.DataFrame,
        reference_label: str,
        days: Sequence[dt.date],
        current: pd.DataFrame,
        columns: Sequence[str],
        write_report: Callable[[str, str], str],
        log: Callable[[str], None] = print,
        model_version: str = "no champion yet",
    ) -> WindowComparison:
        """Every day compared with the reference (the days without users recorded as not
        compared). ``write_report(name, html)`` stores a kept report and returns its path:
        the latest window's and those at or above the warning level are kept. Each report's
        title and header name its window, the reference, the model version and the limits."""
        by_day = dict(iter(current.groupby(WINDOW_KEY))) if len(current) else {}
        reference_end = pd.Timestamp(reference[LABEL_TS].max()).date()
        empty = [d.isoformat() for d in days if d >= reference_end and d not in by_day]
        latest_day = max(by_day, default=None)
        computed_at = dt.datetime.now(dt.UTC)
        common = {"reference": reference_label, "reference_rows": len(reference)}
        rows, results = [], {}
        for day in days:
            window = by_day.get(day)
            if window is None or window.empty:  # the reference period, or nobody
                rows.append(
                    drift_row(day, None, report_path=None, computed_at=computed_at, **common)
                )
                continue
            result = drift_report(reference, sample(window), columns)
            keep = day == latest_day or result.share_drifted >= self.limits.warn_at
            name = f"{self.model.stem}_feature_drift/{day}.html"
            path = None
            if keep:
                title = f"Feature drift of {self.model.name}, window {day}"
                facts = {
                    "Window": f"{day} (users eligible that day, {len(window)} rows)",
                    "Reference": f"{reference_label} ({len(reference)} rows)",
                    "Model version": model_version,
                    "Columns compared": f"{len(columns)}: {', '.join(columns)}",
                    "Thresholds": self.limits.describe(),
                }
                path = write_report(name, with_header(result.html, title, facts))
            results[day] = (result, path)
            rows.append(drift_row(day, result, report_path=path, computed_at=computed_at, **common))
            log(
                f"window {day}: {result.drifted_count} of {len(result.columns)} columns drifted "
                f"({result.share_drifted:.2f}) {', '.join(result.drifted_columns)}"
            )
        return WindowComparison(rows, results, empty)

    def compare_scores(
        self,
        reference_scores,
        batch: pd.DataFrame,
        scored_at: dt.datetime,
        version: int,
        write_report: Callable[[str, str], str],
        reference_label: str = "the reference rows",
    ) -> dict[str, object]:
        """The newest batch's scores (``batch[output]``) against the same version's scores on
        the reference rows: a prediction drift metrics row, its report written."""
        output = self.model.output
        result = drift_report(
            pd.DataFrame({output: reference_scores}),
            batch[[output]].reset_index(drop=True),
            [output],
            # a distance, at every scale: a p-value flags a 0.003 shift of the mean on 300 rows
            num_method=PREDICTION_METHOD,
        )
        column = result.columns[output]
        stamp = pd.Timestamp(scored_at).strftime("%Y-%m-%dT%H%M")
        name = f"{self.model.stem}_prediction_drift/{stamp}-v{version}.html"
        title = f"Prediction drift of {self.model.name} v{version}, batch scored at {stamp}"
        facts = {
            "Window": f"the batch scored at {pd.Timestamp(scored_at).isoformat()} "
            f"({len(batch)} users)",
            "Reference": f"v{version}'s scores on {reference_label} ({len(reference_scores)} rows)",
            "Model version": f"{self.model.registered_model} v{version}",
            "Threshold": f"{column.method} distance >= {column.threshold} is drift",
        }
        return {
            SCORED_AT: scored_at,
            "model_version": version,
            "method": column.method,
            "score": column.score,
            "threshold": column.threshold,
            "drifted": column.drifted,
            "reference_mean": float(reference_scores.mean()),
            "current_mean": float(batch[output].mean()),
            "reference_rows": len(reference_scores),
            "current_rows": len(batch),
            "report_path": write_report(name, with_header(result.html, title, facts)),
            "computed_at": dt.datetime.now(dt.UTC),
        }

    def statuses(self, history: Sequence[tuple[dt.date, float]]) -> list[WindowStatus]:
        limits = self.limits
        return window_statuses(
            history, warn_at=limits.warn_at, error_at=limits.error_at, k=limits.k, n=limits.n
        )


def drift_row(
    day: dt.date,
    result: DriftResult | None,
    *,
    reference: str,
    reference_rows: int,
    report_path: str | None,
    computed_at: dt.datetime,
) -> dict[str, object]:
    """A feature drift metrics row; ``result`` None: the window was not compared."""
    base = {
        WINDOW_KEY: day,
        "feature_ts": window_time(day),
        "reference": reference,
        "reference_rows": reference_rows,
        "report_path": report_path,
        "computed_at": computed_at,
    }
    if result is None:
        return base | {
            "compared": False,
            "share_drifted": None,
            "drifted_count": None,
            "columns_compared": 0,
            "drifted_columns": None,
            "column_scores": None,
            "current_rows": 0,
        }
    return base | {
        "compared": True,
        "share_drifted": result.share_drifted,
        "drifted_count": result.drifted_count,
        "columns_compared": len(result.columns),
        "drifted_columns": ",".join(result.drifted_columns),
        "column_scores": json.dumps(
            {
                c: {
                    "method": d.method,
                    "score": round(d.score, 6),
                    "threshold": d.threshold,
                    "drifted": d.drifted,
                }
                for c, d in result.columns.items()
            }
        ),
        "current_rows": result.current_rows,
    }


@dataclass(frozen=True)
class WindowStatus:
    day: dt.date
    share: float
    status: DriftStatus


def window_statuses(
    history: Sequence[tuple[dt.date, float]], *, warn_at: float, error_at: float, k: int, n: int
) -> list[WindowStatus]:
    """The debounced status of every compared window, as it was judged when it was latest."""
    ordered = sorted(history)
    shares = [share for _, share in ordered]
    return [
        WindowStatus(
            day,
            share,
            debounced_status(shares[: i + 1], warn_at=warn_at, error_at=error_at, k=k, n=n),
        )
        for i, (day, share) in enumerate(ordered)
    ]


def breach_started(statuses: Sequence[WindowStatus]) -> dt.date | None:
    """The first window of the current error streak (the latest windows all in error); None
    when the latest window is not in error. One breach, however many windows it lasts."""
    start = None
    for status in reversed(statuses):
        if status.status.level != "error":
            break
        start = status.day
    return start
