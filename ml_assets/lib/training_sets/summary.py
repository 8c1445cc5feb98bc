"""What a person wants to know about labels and a training set once written: counts, rates per
observation time and per split, and how often each lookup matched. Read in one aggregation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.monitoring.drift import DriftResult, drift_report
from ml_assets.lib.training_sets.declaration import SPLIT, SPLITS, Labels, TrainingSetDeclaration

SKEW_SAMPLE_ROWS = 5_000  # rows per split compared: enough for stable distances


@dataclass(frozen=True)
class LabelSummary:
    per_time: tuple[tuple[dt.datetime, int, float], ...]  # (observation time, rows, mean label)

    @property
    def rows(self) -> int:
        return sum(n for _, n, _ in self.per_time)

    @property
    def rate(self) -> float:
        return sum(n * r for _, n, r in self.per_time) / max(self.rows, 1)

    def markdown(self, timestamp: str, rate_name: str) -> str:
        return f"| {timestamp} | users | {rate_name} |\n|---|---|---|\n" + "\n".join(
            f"| {t.date()} | {n} | {r:.3f} |" for t, n, r in self.per_time
        )


def summarize_labels(labels: DataFrame, declaration: Labels) -> LabelSummary:
    rows = (
        labels.groupBy(declaration.timestamp)
        .agg(F.count(F.lit(1)).alias("rows"), F.avg(declaration.label).alias("rate"))
        .orderBy(declaration.timestamp)
        .collect()
    )
    return LabelSummary(tuple((r[0], int(r["rows"]), float(r["rate"])) for r in rows))


@dataclass(frozen=True)
class TrainingSetSummary:
    rows_per_split: dict[str, int]
    rate_per_split: dict[str, float]
    match_rates: dict[str, float]  # matched-timestamp column -> share of rows matched

    @property
    def rows(self) -> int:
        return sum(self.rows_per_split.values())


def summarize_training_set(
    df: DataFrame, declaration: TrainingSetDeclaration
) -> TrainingSetSummary:
    label = declaration.labels.label
    splits = {
        r[SPLIT]: (int(r["rows"]), float(r["rate"] or 0))
        for r in df.groupBy(SPLIT)
        .agg(F.count(F.lit(1)).alias("rows"), F.avg(label).alias("rate"))
        .collect()
    }
    columns = list(declaration.lookbacks)
    matched = df.select(
        *[F.avg(F.col(c).isNotNull().cast("double")).alias(c) for c in columns]
    ).first()
    return TrainingSetSummary(
        rows_per_split={s: splits.get(s, (0, 0.0))[0] for s in SPLITS},
        rate_per_split={s: splits.get(s, (0, 0.0))[1] for s in SPLITS},
        match_rates={c: float(matched[c] or 0) for c in columns},
    )


def split_drift(
    df: DataFrame, features: tuple[str, ...], reference: str = "train", current: str = "test"
) -> DriftResult | None:
    """Evidently's data drift of the model features between two splits (sampled, seeded):
    how far the rows the model is tested on have moved from the rows it learned from. A
    feature computed over a window the data did not yet cover drifts here by construction
    (it grows with the data), so this is where truncated windows show. None when a split is
    empty."""
    sides = []
    for split in (reference, current):
        rows = df.where(F.col(SPLIT) == split).select(*features).toPandas()
        if rows.empty:
            return None
        sides.append(rows.sample(min(len(rows), SKEW_SAMPLE_ROWS), random_state=0))
    return drift_report(sides[0], sides[1], list(features))
