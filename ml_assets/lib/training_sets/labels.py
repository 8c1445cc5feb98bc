"""Labels at weekly observation times from ``user_daily_activity``, shared by every model.

At each observation time (a weekday at 00:00 UTC), every user *active* (any row) in the
``active_within_days`` before it is observed, and the label says whether an outcome happened
in the ``outcome_days`` after it. Only observation times whose whole outcome window lies
inside the data are used, so a label never depends on days not yet seen; and only those with
``history_days`` of data before them (the training set's longest feature window), so no
feature is computed over a window the data does not cover: a 90-day count on the fifth day
of the data is a 5-day count, which serving never sees.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.training_sets.lookups import TrainingSetError

ACTIVITY_DATE = "activity_date"


class LabelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome_days: int = Field(30, ge=1)
    active_within_days: int = Field(30, ge=1)
    weekday: int = Field(0, ge=0, le=6)  # Monday


def observation_times(
    first_day: dt.date, last_day: dt.date, config: LabelConfig, history_days: int = 0
) -> list[dt.date]:
    """Weekly observation days with ``history_days`` of data before them (at least one) and
    whose outcome window ends by ``last_day``."""
    day = first_day + dt.timedelta(days=max(1, history_days))
    day += dt.timedelta(days=(config.weekday - day.weekday()) % 7)
    days = []
    while day + dt.timedelta(days=config.outcome_days - 1) <= last_day:
        days.append(day)
        day += dt.timedelta(days=7)
    return days


def outcome_labels(
    daily: DataFrame,
    first_day: dt.date,
    last_day: dt.date,
    config: LabelConfig,
    *,
    entity_key: str,
    timestamp: str,
    label: str,
    outcome: SparkColumn,
    positive_when: bool,
    history_days: int = 0,
) -> DataFrame:
    """One row per user active before each observation time: ``label`` is 1 when some day of
    the outcome window satisfies ``outcome`` (``positive_when=True``), or when none does
    (``positive_when=False``, e.g. churn: no engagement at all). Observation times need
    ``history_days`` of data before them."""
    days = observation_times(first_day, last_day, config, history_days)
    if not days:
        earliest = first_day + dt.timedelta(days=max(1, history_days))
        raise TrainingSetError(
            f"No weekly observation time fits the data {first_day}..{last_day}: one needs "
            f"{history_days} days of history before it (the longest feature window, so from "
            f"{earliest}) and a whole {config.outcome_days}-day outcome window after it. "
            "Land more days of data (or history before the first observation time)."
        )
    spark = daily.sparkSession
    observed = spark.createDataFrame([(d,) for d in days], "label_date date")
    a, label_date = F.col(ACTIVITY_DATE), F.col("label_date")
    active = (
        daily.join(
            observed,
            (a >= F.date_sub(label_date, config.active_within_days)) & (a < label_date),
        )
        .select(entity_key, "label_date")
        .distinct()
    )
    happened = (
        daily.where(outcome)
        .join(observed, (a >= label_date) & (a < F.date_add(label_date, config.outcome_days)))
        .select(entity_key, "label_date")
        .distinct()
        .withColumn("_happened", F.lit(True))
    )
    seen = F.col("_happened").isNotNull()
    return active.join(happened, [entity_key, "label_date"], "left").select(
        F.col(entity_key),
        F.col("label_date").cast("timestamp").alias(timestamp),
        (seen if positive_when else ~seen).cast("int").alias(label),
    )


def realised_outcomes(
    daily: DataFrame,
    scored: DataFrame,
    last_day: dt.date,
    config: LabelConfig,
    *,
    entity_key: str,
    timestamp: str,
    label: str,
    outcome: SparkColumn,
    positive_when: bool,
) -> DataFrame:
    """The label each scored row earned, by the rule its labels use: for every row of
    ``scored`` (``entity_key``, ``timestamp`` at 00:00 UTC, any other columns kept) whose
    whole outcome window (``outcome_days`` from the timestamp's day) ends by ``last_day``,
    ``label`` is 1 when ``outcome`` happened in it (``positive_when=True``) or did not
    (``False``). Rows whose window has not passed are left out: their outcome is not known
    yet, and counting them as negatives would be a lie."""
    a, day = F.col(ACTIVITY_DATE), F.to_date(F.col(timestamp))
    matured = scored.where(F.date_add(day, config.outcome_days - 1) <= F.lit(last_day)).withColumn(
        "_day", day
    )
    keys = matured.select(entity_key, "_day").distinct()
    happened = (
        daily.where(outcome)
        .select(entity_key, ACTIVITY_DATE)
        .join(keys, entity_key)
        .where((a >= F.col("_day")) & (a < F.date_add(F.col("_day"), config.outcome_days)))
        .select(entity_key, "_day")
        .distinct()
        .withColumn("_happened", F.lit(True))
    )
    seen = F.col("_happened").isNotNull()
    return (
        matured.join(happened, [entity_key, "_day"], "left")
        .withColumn(label, (seen if positive_when else ~seen).cast("int"))
        .drop("_day", "_happened")
    )
