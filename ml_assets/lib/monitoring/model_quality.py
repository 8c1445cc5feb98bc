"""Model quality on delayed labels, as Lakehouse Monitoring's inference-log profile computes it:
the predictions a model made (batch predictions and the gateway's inference log), joined with
the outcome each scored user realised once its outcome window passed, profiled per window (a
scoring day), source and model version.

The metrics table (``model_quality_table``) holds one row per (window, source, model version),
as a profile metrics table does; rows of the champion also carry the previous champion's
quality on the same rows (re-scored), which tells a rollout regression from decay
(``quality_limits.diagnose``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.features import user_daily_activity
from ml_assets.lib.lakehouse import Column, TableId, TableSpec
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.models.encoding import request_frame
from ml_assets.lib.monitoring.quality import quality
from ml_assets.lib.monitoring.quality_limits import (
    Diagnosis,
    QualityLimits,
    WindowQuality,
    diagnose,
)
from ml_assets.lib.registry import aliases
from ml_assets.lib.registry.store import Registry
from ml_assets.lib.serving.batch import (
    SCORED_AT,
    eligible_features,
    feature_versions,
    predictions_table,
)
from ml_assets.lib.serving.inference_log import inference_log_table
from ml_assets.lib.training_sets.lookups import TableReader
from ml_assets.lib.training_sets.users import ENTITY_KEY, LABEL_TS

BATCH, INFERENCE_LOG = "batch", "inference_log"
WINDOW = "window_start"
PREDICTION = "prediction"
GRANULARITY = "1 day"


def model_quality_table(model: ModelDeclaration) -> TableSpec:
    """``<catalog>.monitoring.<model>_model_quality``."""
    return TableSpec(
        name=TableId.parse(model.model_quality_table),
        columns=(
            Column(WINDOW, "date", False, "The scoring day the predictions were made for"),
            Column("granularity", "string", False, "Window length"),
            Column("source", "string", False, "batch (predictions table) or inference_log"),
            Column("model_version", "bigint", False, "The version that made the predictions"),
            Column("rows", "bigint", False, "Predictions whose outcome has matured"),
            Column("positives", "bigint", False, "Of which the outcome was positive"),
            Column("positive_rate", "double", False, "positives / rows"),
            Column("mean_prediction", "double", False, "Mean predicted probability"),
            Column("roc_auc", "double", True, "ROC AUC (null when one class only)"),
            Column("pr_auc", "double", True, "Average precision (null when one class only)"),
            Column("log_loss", "double", False, "Mean log loss"),
            Column("brier", "double", False, "Brier score"),
            Column("calibration_error", "double", False, "Expected calibration error"),
            Column("calibration", "string", False, "JSON: the reliability curve's bins"),
            Column("previous_version", "bigint", True, "The previous champion, re-scored"),
            Column("previous_roc_auc", "double", True, "Its ROC AUC on the same rows"),
            Column("previous_log_loss", "double", True, "Its log loss on the same rows"),
            Column("outcomes_through", "date", False, "Last day of outcome data used"),
            Column("computed_at", "timestamp", False, "When this row was computed (UTC)"),
        ),
        primary_key=(WINDOW, "source", "model_version"),
        description=f"{model.name}'s quality on realised outcomes: one row per scoring day, "
        "source (batch predictions, inference log) and model version, once the outcome window "
        "of the day's predictions has passed (Lakehouse Monitoring's inference-log profile).",
        owner=model.training_set.owner,
    )


def scored_rows(
    model: ModelDeclaration,
    predictions: DataFrame | None,
    inference_log: DataFrame | None,
) -> DataFrame | None:
    """(source, user_id, label_ts at 00:00 UTC of the features' day, model_version,
    prediction) of every prediction made: batch rows, and the inference log's answered
    records (status 200 with a prediction, a user and a feature time)."""
    frames = []
    if predictions is not None:
        frames.append(
            predictions.select(
                F.lit(BATCH).alias("source"),
                F.col(ENTITY_KEY),
                F.col(SCORED_AT).alias(LABEL_TS),
                F.col("model_version").cast("bigint").alias("model_version"),
                F.col(model.output).cast("double").alias(PREDICTION),
            )
        )
    if inference_log is not None:
        frames.append(
            inference_log.where(
                (F.col("status_code") == 200)
                & F.col(PREDICTION).isNotNull()
                & F.col(ENTITY_KEY).isNotNull()
                & F.col("feature_time").isNotNull()
                & F.col("model_version").isNotNull()
            ).select(
                F.lit(INFERENCE_LOG).alias("source"),
                F.col(ENTITY_KEY),
                F.date_trunc("day", F.col("feature_time")).alias(LABEL_TS),
                F.col("model_version").cast("bigint").alias("model_version"),
                F.col(PREDICTION).cast("double"),
            )
        )
    if not frames:
        return None
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def not_profiled(scored: DataFrame, profiled: DataFrame | None) -> DataFrame:
    """The scored rows whose (window, source, version) has no metrics row yet: a window's
    outcomes mature all at once, so a profiled window never changes and is not read again
    (the daily run costs the new windows, not the whole history)."""
    if profiled is None:
        return scored
    done = profiled.select(
        F.col(WINDOW).alias("_window"), F.col("source").alias("_source"), "model_version"
    ).withColumnRenamed("model_version", "_version")
    keyed = scored.withColumn("_window", F.to_date(F.col(LABEL_TS)))
    return keyed.join(
        done,
        (keyed["_window"] == done["_window"])
        & (keyed["source"] == done["_source"])
        & (keyed["model_version"] == done["_version"]),
        "left_anti",
    ).drop("_window")


def matured(model: ModelDeclaration, daily: DataFrame, scored: DataFrame) -> pd.DataFrame:
    """The scored rows whose outcome window has passed, with the realised label (the labels'
    own rule, through the data's last day)."""
    labels = model.training_set.labels
    if labels.realise is None:
        raise ValueError(
            f"{labels.table.name} declares no realise function: the outcome of a served "
            "prediction cannot be computed. Declare Labels(realise=...) with the label's rule."
        )
    last_day = daily.agg(F.max(labels.source_date)).first()[0]
    if last_day is None:
        raise ValueError(f"{labels.source.name} is empty: no outcome has been observed yet.")
    rows = labels.realise(daily, scored, last_day).toPandas()
    rows[WINDOW] = pd.to_datetime(rows[LABEL_TS]).dt.date
    rows.attrs["outcomes_through"] = last_day
    return rows


PreviousScorer = Callable[[pd.DataFrame], np.ndarray]


def profile(
    model: ModelDeclaration,
    rows: pd.DataFrame,
    outcomes_through: dt.date,
    *,
    champion_version: int | None,
    previous: tuple[int, pd.Series] | None = None,
    computed_at: dt.datetime | None = None,
) -> list[dict[str, object]]:
    """One metrics row per (window, source, model version) of matured ``rows`` (columns
    source, window_start, model_version, prediction and the label). ``previous`` is (version,
    its predictions indexed like ``rows``, NaN where it has none) for the champion's rows: its
    quality on the same rows goes on the champion's metrics rows of a group it scored whole."""
    label = model.label
    now = computed_at or dt.datetime.now(dt.UTC)
    out = []
    for (window, source, version), group in rows.groupby([WINDOW, "source", "model_version"]):
        q = quality(group[label].to_numpy(), group[PREDICTION].to_numpy())
        row: dict[str, object] = {
            WINDOW: window,
            "granularity": GRANULARITY,
            "source": source,
            "model_version": int(version),
            "rows": q.rows,
            "positives": q.positives,
            "positive_rate": q.positive_rate,
            "mean_prediction": q.mean_prediction,
            "roc_auc": q.roc_auc,
            "pr_auc": q.pr_auc,
            "log_loss": q.log_loss,
            "brier": q.brier,
            "calibration_error": q.calibration_error,
            "calibration": json.dumps(
                [
                    {
                        "lower": b.lower,
                        "upper": b.upper,
                        "rows": b.rows,
                        "mean_prediction": round(b.mean_prediction, 6),
                        "observed_rate": round(b.observed_rate, 6),
                    }
                    for b in q.calibration
                ]
            ),
            "previous_version": None,
            "previous_roc_auc": None,
            "previous_log_loss": None,
            "outcomes_through": outcomes_through,
            "computed_at": now,
        }
        same_rows = None if previous is None else previous[1].loc[group.index]
        # compared only where the previous version scored every row of the group (the batch
        # rows: an inference-log row's features are not looked up again)
        if same_rows is not None and int(version) == champion_version and same_rows.notna().all():
            previous_version = previous[0]
            p = quality(group[label].to_numpy(), same_rows.to_numpy())
            row |= {
                "previous_version": previous_version,
                "previous_roc_auc": p.roc_auc,
                "previous_log_loss": p.log_loss,
            }
        out.append(row)
    return out


def champion_windows(history: pd.DataFrame, version: int, source: str) -> list[WindowQuality]:
    """The judged series of one version and source from the metrics table's rows."""
    mine = history[(history["model_version"] == version) & (history["source"] == source)]
    return [
        WindowQuality(
            window=r[WINDOW],
            rows=int(r["rows"]),
            roc_auc=None if pd.isna(r["roc_auc"]) else float(r["roc_auc"]),
            previous_roc_auc=None
            if pd.isna(r["previous_roc_auc"])
            else float(r["previous_roc_auc"]),
        )
        for _, r in mine.sort_values(WINDOW).iterrows()
    ]


def pooled_calibration(history: pd.DataFrame, version: int) -> list[tuple[float, float, int]]:
    """(mean prediction, observed rate, rows) per bin over every window of ``version``: the
    reliability curve."""
    bins: dict[float, list[float]] = {}
    for text in history.loc[history["model_version"] == version, "calibration"]:
        for b in json.loads(text):
            acc = bins.setdefault(b["lower"], [0.0, 0.0, 0])
            acc[0] += b["mean_prediction"] * b["rows"]
            acc[1] += b["observed_rate"] * b["rows"]
            acc[2] += b["rows"]
    return [(p / n, o / n, int(n)) for _, (p, o, n) in sorted(bins.items()) if n]


def sources(history: pd.DataFrame) -> Sequence[str]:
    return sorted(set(history["source"]))


LEVEL_ORDER = ("error", "warn", "not_judged", "ok")  # worst first


def judge(
    history: pd.DataFrame, champion: int, test_roc_auc: float | None, limits: QualityLimits
) -> tuple[str, Diagnosis, dict[str, str]]:
    """The champion's diagnosis per source, and the one the check reports: the worst among
    the judged sources (a source with too few matured rows does not outweigh one that was
    judged). Returns (its source, its diagnosis, the level of every source)."""
    diagnoses = {
        source: diagnose(champion_windows(history, champion, source), test_roc_auc, limits)
        for source in sources(history)
    }
    judged = {s: d for s, d in diagnoses.items() if d.level != "not_judged"}
    source, worst = min(
        (judged or diagnoses).items(), key=lambda kv: LEVEL_ORDER.index(kv[1].level)
    )
    return source, worst, {s: d.level for s, d in diagnoses.items()}


def auc_series(
    history: pd.DataFrame, champion: int | None, previous: int | None
) -> dict[str, list[tuple[dt.date, float]]]:
    """Realised ROC AUC per window of every (version, source), and of the previous version
    re-scored on the champion's rows: the lines of the quality chart."""
    series = {
        f"v{v} {s}": [
            (r[WINDOW], float(r["roc_auc"]))
            for _, r in g.sort_values(WINDOW).iterrows()
            if not pd.isna(r["roc_auc"])
        ]
        for (v, s), g in history.groupby(["model_version", "source"])
    }
    if champion is not None and previous is not None:
        mine = history[history["model_version"] == champion]
        redo = mine.dropna(subset=["previous_roc_auc"]).sort_values(WINDOW)
        if len(redo):
            series[f"v{previous} re-scored on v{champion}'s rows"] = [
                (r[WINDOW], float(r["previous_roc_auc"])) for _, r in redo.iterrows()
            ]
    return series


class QualityInputError(ValueError):
    """What the profile needs is missing: nothing was predicted yet, or the outcomes' table
    cannot date them (the message says which and how to fix it)."""


@dataclass(frozen=True)
class NewOutcomes:
    """One profiling pass: the predictions whose outcome window passed since the last pass
    (``rows``), how many still wait for theirs, and the metrics rows they make."""

    rows: pd.DataFrame
    pending: int
    outcomes_through: dt.date
    metrics: list[dict[str, object]]
    champion: int | None
    previous: int | None  # the version a rollback restores
    champion_test_auc: float | None


def profile_new_outcomes(
    tables: TableReader, registry: Registry, model: ModelDeclaration
) -> NewOutcomes:
    """Every prediction (batch and inference log) not profiled yet whose outcome window has
    passed, joined with its outcome and profiled; the champion's batch rows are also re-scored
    by the previous champion (its quality on the same rows)."""
    name = registry.full_name(model.registered_model)
    champion, previous, test_auc = champion_versions(registry, name)
    log_table = inference_log_table(model.inference_log_table, model.endpoint)
    scored = scored_rows(
        model,
        read_if_exists(tables, predictions_table(model)),
        read_if_exists(tables, log_table),
    )
    if scored is None:
        raise QualityInputError(
            f"Nothing was predicted yet: neither {model.predictions_table} nor "
            f"{model.inference_log_table} exists. Materialize "
            f"{'/'.join(model.predictions_key)} (or serve traffic and ingest its log)."
        )
    scored = not_profiled(scored, read_if_exists(tables, model_quality_table(model)))
    try:
        rows = matured(model, tables.read(user_daily_activity.CONTRACT.table_spec), scored)
    except ValueError as exc:
        raise QualityInputError(str(exc)) from None
    through = rows.attrs["outcomes_through"]
    previous_scores = None
    if previous is not None and champion is not None and len(rows):
        previous_scores = (
            previous,
            rescored(tables, registry, model, name, previous, rows, champion),
        )
    return NewOutcomes(
        rows=rows,
        pending=scored.count() - len(rows),
        outcomes_through=through,
        metrics=profile(model, rows, through, champion_version=champion, previous=previous_scores),
        champion=champion,
        previous=previous,
        champion_test_auc=test_auc,
    )


def read_if_exists(tables: TableReader, spec):
    return tables.read(spec) if tables.version(spec) is not None else None


def champion_versions(registry: Registry, name: str) -> tuple[int | None, int | None, float | None]:
    """The champion, the version a rollback restores (``previous_champion``), and the
    champion's test ROC AUC."""
    champion = registry.by_alias(name, aliases.CHAMPION)
    previous = registry.by_alias(name, aliases.PREVIOUS_CHAMPION)
    if champion is None:
        return None, None, None
    test_auc = registry.run(champion).data.metrics.get("test_roc_auc")
    previous_version = None
    if previous is not None and str(previous.version) != str(champion.version):
        previous_version = int(previous.version)
    return int(champion.version), previous_version, test_auc


def rescored(
    tables: TableReader,
    registry: Registry,
    model: ModelDeclaration,
    name: str,
    version: int,
    rows: pd.DataFrame,
    champion: int,
) -> pd.Series:
    """``version``'s predictions for the champion's batch rows (features looked up as the
    batch did, at each row's scoring time), indexed like ``rows``; NaN where it has none."""
    mine = rows[(rows["model_version"] == champion) & (rows["source"] == BATCH)]
    out = pd.Series(np.nan, index=rows.index)
    if mine.empty:
        return out
    times = sorted({pd.Timestamp(t).to_pydatetime() for t in mine[LABEL_TS]})
    features = eligible_features(tables, times, feature_versions(tables)).toPandas()
    scorer = registry.load(name, version)
    features["_previous"] = np.asarray(
        scorer.predict(request_frame(features, model.encoding)), dtype="float64"
    )
    keyed = mine[[ENTITY_KEY, LABEL_TS]].reset_index()
    keyed[LABEL_TS] = pd.to_datetime(keyed[LABEL_TS])
    features[LABEL_TS] = pd.to_datetime(features[LABEL_TS])
    joined = keyed.merge(features[[ENTITY_KEY, LABEL_TS, "_previous"]], how="left")
    out.loc[joined["index"].to_numpy()] = joined["_previous"].to_numpy()
    return out
