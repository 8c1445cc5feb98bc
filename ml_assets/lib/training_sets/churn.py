"""The churn problem: labels at weekly observation times and the churn training set.

Labels: at each observation time ``label_ts`` (Mondays 00:00 UTC), every user *active* in the
``active_within_days`` before it is observed; ``churned = 1`` when the user has neither a
login nor a purchase in the ``outcome_days`` after it. Only observation times whose whole
outcome window lies inside the data are used, so a label never depends on days not yet seen.

The training set looks up ``user_activity`` (lookback 2 days: the table is refreshed daily,
a missing day is tolerated once) and ``user_profile`` (no lookback: the attributes hold until
the next change), carries the matched feature timestamp of each lookup, derives the account
age at ``label_ts`` and assigns a time-based split.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, model_validator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.features import user_activity, user_profile
from ml_assets.lib.lakehouse import Column, TableId, TableSpec
from ml_assets.lib.training_sets.lookups import (
    FeatureLookup,
    TableReader,
    TrainingSet,
    TrainingSetError,
    build_training_set,
    content_hash,
)
from ml_assets.names import CHURN_LABELS_TABLE, CHURN_TRAINING_SET_TABLE

OWNER = "ml-platform"
ENTITY_KEY = "user_id"
LABEL_TS = "label_ts"
LABEL = "churned"
SPLIT = "split"
SPLITS = ("train", "validation", "test")
ACTIVITY_MATCHED_TS = "user_activity_feature_ts"
PROFILE_MATCHED_TS = "user_profile_feature_ts"
ACCOUNT_AGE = "account_age_days"

LABELS = TableSpec(
    name=TableId.parse(CHURN_LABELS_TABLE),
    columns=(
        Column(ENTITY_KEY, "bigint", False, "User observed"),
        Column(LABEL_TS, "timestamp", False, "Observation time (Monday 00:00 UTC)"),
        Column(LABEL, "int", False, "1: no login and no purchase in the 30 days after label_ts"),
    ),
    primary_key=(ENTITY_KEY, LABEL_TS),
    description="Churn labels: users active before each weekly observation time, and the outcome.",
    owner=OWNER,
)


class LabelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome_days: int = 30
    active_within_days: int = 30
    weekday: int = 0  # Monday


def observation_times(first_day: dt.date, last_day: dt.date, config: LabelConfig) -> list[dt.date]:
    """Weekly observation days after the first day whose outcome window ends by ``last_day``."""
    day = first_day + dt.timedelta(days=1)
    day += dt.timedelta(days=(config.weekday - day.weekday()) % 7)
    days = []
    while day + dt.timedelta(days=config.outcome_days - 1) <= last_day:
        days.append(day)
        day += dt.timedelta(days=7)
    return days


def compute_churn_labels(
    daily: DataFrame, first_day: dt.date, last_day: dt.date, config: LabelConfig | None = None
) -> DataFrame:
    """Labels from ``user_daily_activity`` covering ``first_day..last_day`` (inclusive)."""
    config = config or LabelConfig()
    days = observation_times(first_day, last_day, config)
    if not days:
        raise TrainingSetError(
            f"No weekly observation time between {first_day} and {last_day} leaves a whole "
            f"{config.outcome_days}-day outcome window inside the data: land more days."
        )
    spark = daily.sparkSession
    observed = spark.createDataFrame([(d,) for d in days], "label_date date")
    a, label_date = F.col("activity_date"), F.col("label_date")
    active = (
        daily.join(
            observed,
            (a >= F.date_sub(label_date, config.active_within_days)) & (a < label_date),
        )
        .select(ENTITY_KEY, "label_date")
        .distinct()
    )
    engaged = (
        daily.where((F.col("logins") > 0) | (F.col("purchases") > 0))
        .join(
            observed,
            (a >= label_date) & (a < F.date_add(label_date, config.outcome_days)),
        )
        .select(ENTITY_KEY, "label_date")
        .distinct()
        .withColumn("_engaged", F.lit(True))
    )
    return active.join(engaged, [ENTITY_KEY, "label_date"], "left").select(
        F.col(ENTITY_KEY),
        F.col("label_date").cast("timestamp").alias(LABEL_TS),
        F.col("_engaged").isNull().cast("int").alias(LABEL),
    )


ACTIVITY_LOOKBACK = dt.timedelta(days=2)
CHURN_LOOKUPS: tuple[FeatureLookup, ...] = (
    FeatureLookup(
        table_name=user_activity.CONTRACT.name,
        lookup_key=ENTITY_KEY,
        timestamp_lookup_key=LABEL_TS,
        lookback_window=ACTIVITY_LOOKBACK,
        matched_timestamp_column=ACTIVITY_MATCHED_TS,
    ),
    FeatureLookup(
        table_name=user_profile.CONTRACT.name,
        lookup_key=ENTITY_KEY,
        timestamp_lookup_key=LABEL_TS,
        matched_timestamp_column=PROFILE_MATCHED_TS,
    ),
)
# what the model sees: the looked-up features except the raw signup time, plus the age
MODEL_FEATURES: tuple[str, ...] = (
    *user_activity.CONTRACT.feature_names,
    "plan_tier",
    "country",
    ACCOUNT_AGE,
)


def _training_set_columns() -> tuple[Column, ...]:
    looked_up = []
    for lookup, contract in (
        (CHURN_LOOKUPS[0], user_activity.CONTRACT),
        (CHURN_LOOKUPS[1], user_profile.CONTRACT),
    ):
        looked_up += [
            Column(lookup.output_name(f.name), f.dtype, True, f"{contract.name}: {f.description}")
            for f in contract.features
        ]
        looked_up.append(
            Column(
                lookup.matched_timestamp_column,
                "timestamp",
                True,
                f"feature_ts of the {contract.name} row used; null if none matched "
                "(not a model input)",
            )
        )
    return (
        *LABELS.columns,
        *looked_up,
        Column(ACCOUNT_AGE, "bigint", True, "Whole days from signup_ts to label_ts"),
        Column(SPLIT, "string", False, "train, validation or test, by label_ts"),
    )


TRAINING_SET = TableSpec(
    name=TableId.parse(CHURN_TRAINING_SET_TABLE),
    columns=_training_set_columns(),
    primary_key=(ENTITY_KEY, LABEL_TS),
    description=(
        "Churn labels joined point-in-time with user_activity (lookback 2 days) and "
        "user_profile, with a time-based split. Lineage (Delta versions) in the metadata."
    ),
    owner=OWNER,
)


class SplitCutoffs(BaseModel):
    """``label_ts < validation_start``: train; ``< test_start``: validation; else test."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    validation_start: dt.date
    test_start: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> SplitCutoffs:
        if not self.validation_start < self.test_start:
            raise ValueError(
                f"validation_start ({self.validation_start}) must be before test_start "
                f"({self.test_start})."
            )
        return self


def default_cutoffs(
    label_days: Sequence[dt.date], validation_fraction: float = 0.2, test_fraction: float = 0.2
) -> SplitCutoffs:
    """The last ~20 % of observation times for test, the ~20 % before for validation."""
    days = sorted(set(label_days))
    if len(days) < 3:
        raise TrainingSetError(
            f"A train/validation/test split by time needs at least 3 observation times; "
            f"found {len(days)} ({days}). Land more days of data."
        )
    n_test = max(1, round(len(days) * test_fraction))
    n_validation = max(1, round(len(days) * validation_fraction))
    n_validation = min(n_validation, len(days) - n_test - 1)
    return SplitCutoffs(validation_start=days[-(n_test + n_validation)], test_start=days[-n_test])


def assign_split(df: DataFrame, cutoffs: SplitCutoffs) -> DataFrame:
    ts = F.col(LABEL_TS)
    validation = F.lit(cutoffs.validation_start).cast("timestamp")
    test = F.lit(cutoffs.test_start).cast("timestamp")
    return df.withColumn(
        SPLIT,
        F.when(ts < validation, "train").when(ts < test, "validation").otherwise("test"),
    )


def label_days(labels: DataFrame) -> list[dt.date]:
    return [r[0] for r in labels.select(F.to_date(LABEL_TS)).distinct().collect()]


@dataclass(frozen=True)
class Lineage:
    """Everything needed to rebuild the same training set: input versions and the split."""

    table_versions: Mapping[str, int]  # labels and every feature table
    cutoffs: SplitCutoffs
    content_hash: str

    def as_metadata(self) -> dict[str, object]:
        return {
            "table_versions": dict(self.table_versions),
            "validation_start": self.cutoffs.validation_start.isoformat(),
            "test_start": self.cutoffs.test_start.isoformat(),
            "content_hash": self.content_hash,
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, object]) -> Lineage:
        return cls(
            table_versions={k: int(v) for k, v in dict(metadata["table_versions"]).items()},
            cutoffs=SplitCutoffs(
                validation_start=dt.date.fromisoformat(str(metadata["validation_start"])),
                test_start=dt.date.fromisoformat(str(metadata["test_start"])),
            ),
            content_hash=str(metadata["content_hash"]),
        )


def with_account_age(df: DataFrame) -> DataFrame:
    """``account_age_days``: whole days from ``signup_ts`` to ``label_ts`` (null without a
    signup time). The online features compute the same at the request time."""
    age = F.floor(
        (F.col(LABEL_TS).cast("double") - F.col("signup_ts").cast("double")) / 86_400
    ).cast("long")
    return df.withColumn(ACCOUNT_AGE, age)


def build_churn_training_set(
    tables: TableReader,
    *,
    cutoffs: SplitCutoffs | None = None,
    versions: Mapping[str, int] | None = None,
) -> tuple[TrainingSet, SplitCutoffs]:
    """The churn training set at the current versions, or at pinned ones (to rebuild), and the
    split cutoffs it used. Its lineage is ``Lineage(training.table_versions, cutoffs, hash)``
    once its content hash is known (of the rows as written)."""
    labels_table = str(LABELS.name)
    labels_version = versions[labels_table] if versions else tables.version(labels_table)
    if labels_version is None:
        raise TrainingSetError(f"{labels_table} has not been written yet.")
    spine = tables.read(labels_table, version=labels_version)
    training = build_training_set(
        spine, CHURN_LOOKUPS, label=LABEL, tables=tables, versions=versions
    )
    if cutoffs is None:
        cutoffs = default_cutoffs(label_days(spine))
    df = assign_split(with_account_age(training.df), cutoffs).select(*TRAINING_SET.column_names)
    table_versions = {labels_table: labels_version, **training.table_versions}
    result = TrainingSet(
        df=df,
        label=LABEL,
        feature_columns=MODEL_FEATURES,
        matched_timestamp_columns=training.matched_timestamp_columns,
        table_versions=table_versions,
    )
    return result, cutoffs


def rebuild_churn_training_set(tables: TableReader, lineage: Lineage) -> tuple[DataFrame, str]:
    """Rebuild a recorded training set by time travel; returns the rows and their hash."""
    training, _ = build_churn_training_set(
        tables, cutoffs=lineage.cutoffs, versions=lineage.table_versions
    )
    return training.df, content_hash(training.df)


LOOKBACKS: Mapping[str, dt.timedelta | None] = {
    lookup.matched_timestamp_column: lookup.lookback_window for lookup in CHURN_LOOKUPS
}
