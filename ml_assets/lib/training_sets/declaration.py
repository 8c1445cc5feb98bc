"""Labels and training sets declared as data: what a model learns from, once, for every stage.

A ``Labels`` declaration names its table, its label column and the function that computes it
from a daily source table; a ``TrainingSetDeclaration`` names the labels (the spine), the
point-in-time lookups over feature tables, the columns derived after the join and the model's
features. From them come the training set's table schema, its build at the current or pinned
Delta versions, its rebuild from recorded lineage, and everything the Dagster factories need
(keys, checks, column lineage); nothing is wired by position. A split by time (train <
validation < test) and the lineage record are shared by every training set.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from pydantic import BaseModel, ConfigDict, model_validator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.features.contracts import FeatureTableContract
from ml_assets.lib.features.registry import contract_for
from ml_assets.lib.lakehouse import Column, TableId, TableSpec
from ml_assets.lib.training_sets.lookups import (
    FeatureLookup,
    TableReader,
    TrainingSet,
    TrainingSetError,
    build_training_set,
    content_hash,
)

SPLIT = "split"
SPLITS = ("train", "validation", "test")
DEFAULT_OWNER = "ml-platform"

# (the daily source, its first day, its last day, *, history_days) -> one row per entity and
# observation time, each with at least ``history_days`` of the source's data before it
LabelFunction = Callable[..., DataFrame]
# (the daily source, scored rows (entity key, timestamp, ...), the source's last day) -> the
# scored rows whose outcome window has passed, each with the label it earned (the same rule)
RealiseFunction = Callable[[DataFrame, DataFrame, dt.date], DataFrame]


@dataclass(frozen=True)
class Labels:
    """A label table computed whole from a daily source table (``source``, whose day column
    is ``source_date``). The primary key is (entity key, observation time); ``label`` takes
    one of ``values``."""

    table: TableSpec
    label: str
    compute: LabelFunction
    source: TableSpec
    source_date: str
    rate_name: str  # how the mean label reads in a log line, e.g. "churn rate"
    values: tuple[int, ...] = (0, 1)
    realise: RealiseFunction | None = None  # outcomes of served predictions (model quality)

    def __post_init__(self) -> None:
        problems = []
        if len(self.table.primary_key) != 2:
            problems.append(
                f"primary key {self.table.primary_key}: expected (entity key, observation time)"
            )
        if self.label not in self.table.column_names:
            problems.append(f"label {self.label!r} is not a column of {self.table.name}")
        if self.source_date not in self.source.column_names:
            problems.append(
                f"source_date {self.source_date!r} is not a column of {self.source.name}"
            )
        if problems:
            raise TrainingSetError(f"Labels {self.table.name}: " + "; ".join(problems))

    @property
    def entity_key(self) -> str:
        return self.table.primary_key[0]

    @property
    def timestamp(self) -> str:
        return self.table.primary_key[1]

    @property
    def constraints(self) -> dict[str, str]:
        """Named SQL constraints the label table's checks enforce."""
        allowed = ", ".join(str(v) for v in self.values)
        name = f"{self.label}_is_" + "_or_".join(str(v) for v in self.values)
        return {name: f"{self.label} IN ({allowed})"}


@dataclass(frozen=True)
class Derived:
    """A column computed on the joined rows (e.g. an age at the observation time)."""

    column: Column
    compute: Callable[[DataFrame], DataFrame]  # adds ``column.name``


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


def assign_split(df: DataFrame, cutoffs: SplitCutoffs, timestamp: str) -> DataFrame:
    ts = F.col(timestamp)
    validation = F.lit(cutoffs.validation_start).cast("timestamp")
    test = F.lit(cutoffs.test_start).cast("timestamp")
    return df.withColumn(
        SPLIT,
        F.when(ts < validation, "train").when(ts < test, "validation").otherwise("test"),
    )


def label_days(labels: DataFrame, timestamp: str) -> list[dt.date]:
    return [r[0] for r in labels.select(F.to_date(timestamp)).distinct().collect()]


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


@dataclass(frozen=True)
class TrainingSetDeclaration:
    """Labels joined point-in-time with feature tables, derived columns added, split by time."""

    table_name: str  # catalog.schema.table
    labels: Labels
    lookups: tuple[FeatureLookup, ...]
    model_features: tuple[str, ...]
    description: str
    derived: tuple[Derived, ...] = ()
    owner: str = DEFAULT_OWNER

    def __post_init__(self) -> None:
        TableId.parse(self.table_name)
        problems = []
        for lookup in self.lookups:
            if lookup.timestamp_lookup_key != self.labels.timestamp:
                problems.append(
                    f"lookup of {lookup.table_name} is keyed on {lookup.timestamp_lookup_key!r}, "
                    f"the labels' time is {self.labels.timestamp!r}"
                )
            if lookup.matched_timestamp_column is None:
                problems.append(
                    f"lookup of {lookup.table_name} needs a matched_timestamp_column "
                    "(the no-future-values check reads it)"
                )
        if not problems:
            columns = set(self.table.column_names)
            missing = [f for f in self.model_features if f not in columns]
            if missing:
                problems.append(f"model features {missing} are not columns of the training set")
        if problems:
            raise TrainingSetError(f"Training set {self.table_name}: " + "; ".join(problems))

    @property
    def name(self) -> str:
        """The table's short name, e.g. ``churn_training_set``."""
        return TableId.parse(self.table_name).table

    def contract(self, lookup: FeatureLookup) -> FeatureTableContract:
        return contract_for(lookup.table_name)

    @property
    def lookbacks(self) -> Mapping[str, dt.timedelta | None]:
        """Matched-timestamp column -> the lookup's lookback window (None: unbounded)."""
        return {lk.matched_timestamp_column: lk.lookback_window for lk in self.lookups}

    @cached_property
    def feature_windows(self) -> dict[str, int]:
        """Matched-timestamp column -> the longest window (days) of the model features that
        lookup brings, for the lookups that bring windowed features."""
        windows = {}
        for lookup in self.lookups:
            days = [
                int(f.window.removesuffix("d"))
                for f in self.contract(lookup).features
                if f.window is not None and lookup.output_name(f.name) in self.model_features
            ]
            if days:
                windows[lookup.matched_timestamp_column] = max(days)
        return windows

    @cached_property
    def history_days(self) -> int:
        """Days of data an observation time needs before it so that every feature window is
        complete: the longest window plus its lookup's lookback (a matched row may be that
        much older than the observation time). An unbounded lookback adds nothing here (no
        bound to add); ``feature_windows_complete`` judges the matched rows themselves."""
        needed = [0]
        for lookup in self.lookups:
            window = self.feature_windows.get(lookup.matched_timestamp_column)
            if window is not None:
                lookback = lookup.lookback_window or dt.timedelta(0)
                needed.append(window + math.ceil(lookback / dt.timedelta(days=1)))
        return max(needed)

    def compute_labels(self, daily: DataFrame, first_day: dt.date, last_day: dt.date):
        """The label rows from the daily source covering ``first_day..last_day``, at the
        observation times with ``history_days`` of data before them."""
        return self.labels.compute(daily, first_day, last_day, history_days=self.history_days)

    @property
    def feature_tables(self) -> tuple[str, ...]:
        return tuple(lk.table_name for lk in self.lookups)

    @cached_property
    def table(self) -> TableSpec:
        looked_up: list[Column] = []
        for lookup in self.lookups:
            contract = self.contract(lookup)
            looked_up += [
                Column(
                    lookup.output_name(f.name), f.dtype, True, f"{contract.name}: {f.description}"
                )
                for f in contract.features
                if lookup.feature_names is None or f.name in lookup.feature_names
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
        return TableSpec(
            name=TableId.parse(self.table_name),
            columns=(
                *self.labels.table.columns,
                *looked_up,
                *(d.column for d in self.derived),
                Column(
                    SPLIT, "string", False, f"train, validation or test, by {self.labels.timestamp}"
                ),
            ),
            primary_key=self.labels.table.primary_key,
            description=self.description,
            owner=self.owner,
        )

    def build(
        self,
        tables: TableReader,
        *,
        cutoffs: SplitCutoffs | None = None,
        versions: Mapping[str, int] | None = None,
    ) -> tuple[TrainingSet, SplitCutoffs]:
        """The training set at the current versions, or at pinned ones (to rebuild), and the
        split cutoffs it used. Its lineage is ``Lineage(training.table_versions, cutoffs, hash)``
        once its content hash is known (of the rows as written)."""
        labels_table = str(self.labels.table.name)
        labels_version = versions[labels_table] if versions else tables.version(labels_table)
        if labels_version is None:
            raise TrainingSetError(f"{labels_table} has not been written yet.")
        spine = tables.read(labels_table, version=labels_version)
        training = build_training_set(
            spine, self.lookups, label=self.labels.label, tables=tables, versions=versions
        )
        if cutoffs is None:
            cutoffs = default_cutoffs(label_days(spine, self.labels.timestamp))
        df = training.df
        for derived in self.derived:
            df = derived.compute(df)
        df = assign_split(df, cutoffs, self.labels.timestamp).select(*self.table.column_names)
        result = TrainingSet(
            df=df,
            label=self.labels.label,
            feature_columns=self.model_features,
            matched_timestamp_columns=training.matched_timestamp_columns,
            table_versions={labels_table: labels_version, **training.table_versions},
            join_plans=training.join_plans,
        )
        return result, cutoffs

    def rebuild(self, tables: TableReader, lineage: Lineage) -> tuple[DataFrame, str]:
        """Rebuild a recorded training set by time travel; returns the rows and their hash."""
        training, _ = self.build(tables, cutoffs=lineage.cutoffs, versions=lineage.table_versions)
        return training.df, content_hash(training.df)
