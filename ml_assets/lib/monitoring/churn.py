"""Drift monitoring of the churn model: the windows, the reference, and the drift metrics
tables (one row per window, as Databricks Lakehouse Monitoring keeps a drift metrics table).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.features import user_activity, user_profile
from ml_assets.lib.lakehouse import Column, TableId, TableSpec
from ml_assets.lib.monitoring.drift import DriftResult, DriftStatus, debounced_status
from ml_assets.lib.monitoring.lakehouse_monitor import InferenceLogMonitor
from ml_assets.lib.serving.batch import PREDICTIONS, SCORED_AT, eligible_features
from ml_assets.lib.training_sets.churn import ENTITY_KEY, LABEL_TS, MODEL_FEATURES, SPLIT
from ml_assets.lib.training_sets.lookups import TableReader

REFERENCE_SPLIT = "test"
MAX_ROWS = 5_000  # rows per side: enough for stable distances; more only cost time
WINDOW_KEY = "window_date"

FEATURE_DRIFT = TableSpec(
    name=TableId("main", "monitoring", "churn_feature_drift"),
    columns=(
        Column(WINDOW_KEY, "date", False, "The day whose features were compared"),
        Column("feature_ts", "timestamp", False, "Feature time of the window (the next 00:00)"),
        Column("compared", "boolean", False, "False: inside the reference period, not compared"),
        Column("share_drifted", "double", True, "Share of the columns that drifted"),
        Column("drifted_count", "int", True, "Columns that drifted"),
        Column("columns_compared", "int", False, "Columns compared"),
        Column("drifted_columns", "string", True, "Comma-separated drifted columns"),
        Column("column_scores", "string", True, "JSON: column -> method, score, threshold"),
        Column("reference", "string", False, "Reference table, version and split"),
        Column("reference_rows", "bigint", False, "Reference rows compared (sampled)"),
        Column("current_rows", "bigint", False, "Window rows compared (sampled)"),
        Column("report_path", "string", True, "Evidently HTML report (kept: see feature_drift)"),
        Column("computed_at", "timestamp", False, "When this row was computed"),
    ),
    primary_key=(WINDOW_KEY,),
    description="Feature drift of the churn model's inputs: one row per daily window against "
    "the training reference (Evidently DataDriftPreset).",
    owner="ml-platform",
)

PREDICTION_DRIFT = TableSpec(
    name=TableId("main", "monitoring", "churn_prediction_drift"),
    columns=(
        Column("scored_at", "timestamp", False, "Batch scoring time compared"),
        Column("model_version", "bigint", False, "Version whose scores were compared"),
        Column("method", "string", False, "Evidently's drift method"),
        Column("score", "double", False, "Drift score (p-value or distance)"),
        Column("threshold", "double", False, "Threshold of the method"),
        Column("drifted", "boolean", False, "Whether the score distribution drifted"),
        Column("reference_mean", "double", False, "Mean churn probability on the reference"),
        Column("current_mean", "double", False, "Mean churn probability of the batch"),
        Column("reference_rows", "bigint", False, "Reference rows"),
        Column("current_rows", "bigint", False, "Batch rows"),
        Column("report_path", "string", False, "Evidently HTML report"),
        Column("computed_at", "timestamp", False, "When this row was computed"),
    ),
    primary_key=("scored_at", "model_version"),
    description="Prediction drift of the churn model: the batch scores against the model's "
    "scores on its reference rows.",
    owner="ml-platform",
)


def comparable_columns(
    reference_start: dt.date, data_start: dt.date
) -> tuple[list[str], dict[str, str]]:
    """The model features whose window fits between ``data_start`` and the reference's first
    ``label_ts``; and, for the others, why they are left out."""
    windows = {
        f.name: int(f.window.removesuffix("d"))
        for contract in (user_activity.CONTRACT, user_profile.CONTRACT)
        for f in contract.features
        if f.window is not None
    }
    history = (reference_start - data_start).days
    kept, left_out = [], {}
    for column in MODEL_FEATURES:
        days = windows.get(column, 0)
        if days > history:
            left_out[column] = (
                f"{days}-day window, but the reference starts {history} days after the data"
            )
        else:
            kept.append(column)
    return kept, left_out


def window_time(day: dt.date) -> dt.datetime:
    """Feature time of a day's window: the end of the day, when its user_activity rows are."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def sample(frame: pd.DataFrame, rows: int = MAX_ROWS, seed: int = 0) -> pd.DataFrame:
    """At most ``rows`` rows, the same ones for the same input (sorted by user first)."""
    ordered = frame.sort_values([c for c in (LABEL_TS, ENTITY_KEY) if c in frame.columns])
    if len(ordered) <= rows:
        return ordered.reset_index(drop=True)
    return ordered.sample(rows, random_state=seed).reset_index(drop=True)


def reference_rows(training_set: DataFrame) -> pd.DataFrame:
    """The reference: the test split's model features (sampled), with ``label_ts``."""
    rows = training_set.where(F.col(SPLIT) == REFERENCE_SPLIT).select(
        ENTITY_KEY, LABEL_TS, *MODEL_FEATURES
    )
    frame = rows.toPandas()
    if frame.empty:
        raise ValueError(
            f"The training set has no {REFERENCE_SPLIT!r} rows to use as the drift reference: "
            "materialize training_sets/churn_training_set first."
        )
    return sample(frame)


def window_features(
    tables: TableReader, days: Sequence[dt.date], versions: Mapping[str, int]
) -> pd.DataFrame:
    """The model's features of the eligible users of every window in ``days``, in one
    point-in-time join, with ``window_date``."""
    if not days:
        return pd.DataFrame(columns=[WINDOW_KEY, ENTITY_KEY, *MODEL_FEATURES])
    times = [window_time(d) for d in days]
    frame = (
        eligible_features(tables, times, versions)
        .select(ENTITY_KEY, LABEL_TS, *MODEL_FEATURES)
        .withColumn(WINDOW_KEY, F.date_sub(F.to_date(LABEL_TS), 1))
        .toPandas()
    )
    frame[WINDOW_KEY] = pd.to_datetime(frame[WINDOW_KEY]).dt.date
    return frame


def drift_row(
    day: dt.date,
    result: DriftResult | None,
    *,
    reference: str,
    reference_rows: int,
    report_path: str | None,
    computed_at: dt.datetime,
) -> dict[str, object]:
    """A FEATURE_DRIFT row; ``result`` None: the window was not compared."""
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


# On Databricks, Lakehouse Monitoring also watches the batch predictions (its own profile and
# drift metrics tables and dashboard; see lib/monitoring/lakehouse_monitor.py for the choices).
PREDICTIONS_MONITOR = InferenceLogMonitor(
    table=PREDICTIONS,
    timestamp_col=SCORED_AT,
    model_id_col="model_version",
    prediction_col="churn_probability",
    granularities=("1 day",),
)
