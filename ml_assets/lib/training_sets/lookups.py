"""``FeatureLookup`` and ``build_training_set``, after Databricks' ``create_training_set``.

A lookup names a feature table, the spine columns that hold its entity keys (in the order of
the table's keys) and the spine's timestamp column. The table's own timestamp key, features
and default values come from its ``FeatureTableContract``. Tables are read through anything
with the lakehouse's ``read``/``version`` methods, at the current version or at pinned
versions (time travel), and the versions read are returned with the result: with them,
``build_training_set`` rebuilds the same rows later, whatever the tables have become since.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.features.contracts import FeatureTableContract
from ml_assets.lib.features.registry import contract_for
from ml_assets.lib.training_sets.pit import StrategyChoice, choose_strategy, point_in_time_join


class TrainingSetError(ValueError):
    """A lookup or spine that cannot make a training set (unknown feature, name clash, ...)."""


class TableReader(Protocol):
    def read(self, table: str, *, version: int | None = None) -> DataFrame: ...

    def version(self, table: str) -> int | None: ...


@dataclass(frozen=True)
class FeatureLookup:
    """Features of one table, looked up point-in-time for every spine row.

    ``default_values=None`` takes the contract's defaults; pass ``{}`` for none.
    ``rename_outputs`` maps a feature name to its output column. ``matched_timestamp_column``
    (ours, not in Databricks) also outputs the feature timestamp of the matched row under that
    name, null when nothing matched: the evidence the leakage checks read.
    """

    table_name: str
    lookup_key: str | Sequence[str]
    timestamp_lookup_key: str
    feature_names: Sequence[str] | None = None
    lookback_window: dt.timedelta | None = None
    default_values: Mapping[str, object] | None = None
    rename_outputs: Mapping[str, str] | None = None
    matched_timestamp_column: str | None = None

    @property
    def lookup_keys(self) -> list[str]:
        return [self.lookup_key] if isinstance(self.lookup_key, str) else list(self.lookup_key)

    def output_name(self, feature: str) -> str:
        return (self.rename_outputs or {}).get(feature, feature)


@dataclass(frozen=True)
class TrainingSet:
    """The joined rows plus what is needed to explain and rebuild them."""

    df: DataFrame
    label: str | None
    feature_columns: tuple[str, ...]  # model inputs
    matched_timestamp_columns: Mapping[str, str] = field(default_factory=dict)  # column -> table
    table_versions: Mapping[str, int] = field(default_factory=dict)
    # table -> how its point-in-time join found matches (where chosen on the spine)
    join_plans: Mapping[str, StrategyChoice] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedLookup:
    """A lookup against its table's contract: which features, under which output names, with
    which defaults. One resolution serves the join and the reference join that checks it."""

    lookup: FeatureLookup
    contract: FeatureTableContract
    features: tuple[str, ...]  # the table's feature names
    outputs: tuple[str, ...]  # their output names, then the matched timestamp column if any
    defaults: Mapping[str, object]  # by output name

    def select_from(self, table: DataFrame, timestamp_as: str) -> DataFrame:
        """Keys under the spine's names, the feature time as ``timestamp_as``, the outputs."""
        contract, lookup = self.contract, self.lookup
        columns = [
            *[
                F.col(k).alias(s)
                for k, s in zip(contract.entity_keys, lookup.lookup_keys, strict=True)
            ],
            F.col(contract.timestamp_key).alias(timestamp_as),
            *[F.col(n).alias(lookup.output_name(n)) for n in self.features],
        ]
        if lookup.matched_timestamp_column:
            columns.append(F.col(contract.timestamp_key).alias(lookup.matched_timestamp_column))
        return table.select(*columns)


def resolve(
    lookup: FeatureLookup, contracts: Mapping[str, FeatureTableContract] | None = None
) -> ResolvedLookup:
    contract = contract_for(lookup.table_name, contracts)
    keys = lookup.lookup_keys
    if len(keys) != len(contract.entity_keys):
        raise TrainingSetError(
            f"FeatureLookup of {contract.name} gives lookup_key {keys}, but the table is keyed "
            f"by {list(contract.entity_keys)}: give one spine column per key, in that order."
        )
    names = (
        list(contract.feature_names) if lookup.feature_names is None else list(lookup.feature_names)
    )
    unknown = [n for n in names if n not in contract.feature_names]
    if unknown:
        raise TrainingSetError(
            f"FeatureLookup of {lookup.table_name} asks for {unknown}, which the table does not "
            f"have; its features are {list(contract.feature_names)}."
        )
    outputs = [lookup.output_name(n) for n in names]
    if lookup.matched_timestamp_column:
        outputs.append(lookup.matched_timestamp_column)
    defaults = contract.default_values if lookup.default_values is None else lookup.default_values
    return ResolvedLookup(
        lookup=lookup,
        contract=contract,
        features=tuple(names),
        outputs=tuple(outputs),
        defaults={lookup.output_name(n): v for n, v in defaults.items() if n in names},
    )


def build_training_set(
    spine_df: DataFrame,
    lookups: Sequence[FeatureLookup],
    label: str | None,
    exclude_columns: Sequence[str] = (),
    *,
    tables: TableReader,
    versions: Mapping[str, int] | None = None,
    contracts: Mapping[str, FeatureTableContract] | None = None,
) -> TrainingSet:
    """Join every lookup's features onto the spine, point-in-time; drop ``exclude_columns``.

    Runs one count per lookup now (``choose_strategy``, on the spine as given) to choose how
    its join finds matches; the joins themselves run when the result is read."""
    if label is not None and label not in spine_df.columns:
        raise TrainingSetError(
            f"The label column {label!r} is not in the spine (columns: {spine_df.columns})."
        )
    df = spine_df
    feature_columns: list[str] = []
    matched: dict[str, str] = {}
    read_versions: dict[str, int] = {}
    plans: dict[str, StrategyChoice] = {}
    for lookup in lookups:
        resolved = resolve(lookup, contracts)
        table = resolved.contract.name
        keys = lookup.lookup_keys
        missing = [c for c in [*keys, lookup.timestamp_lookup_key] if c not in df.columns]
        if missing:
            raise TrainingSetError(
                f"The spine must contain columns {[*keys, lookup.timestamp_lookup_key]} for the "
                f"lookup of {table}, but {missing} were missing (it has {df.columns})."
            )
        if versions is not None and table not in versions:
            raise TrainingSetError(f"No pinned version for {table} in {dict(versions)}.")
        version = versions[table] if versions is not None else tables.version(table)
        if version is None:
            raise TrainingSetError(f"Feature table {table} has not been written yet.")
        read_versions[table] = version
        clashes = [c for c in resolved.outputs if c in df.columns]
        if clashes:
            raise TrainingSetError(
                f"The lookup of {table} would add columns {clashes} that already exist; "
                "use rename_outputs to give them other names."
            )
        ts_out = "__feature_ts"
        features = resolved.select_from(tables.read(table, version=version), ts_out)
        columns = {
            "lookup_key": keys,
            "timestamp_lookup_key": lookup.timestamp_lookup_key,
            "feature_timestamp_key": ts_out,
        }
        # the plan is chosen on the spine as given where it can be, so that counting does
        # not run the earlier lookups' joins again
        strategy = "auto"
        if set(spine_df.columns) >= {*keys, lookup.timestamp_lookup_key}:
            plans[table] = choose_strategy(spine_df, features, **columns)
            strategy = plans[table].strategy
        df = point_in_time_join(
            df,
            features,
            **columns,
            strategy=strategy,
            feature_names=list(resolved.outputs),
            lookback_window=lookup.lookback_window,
            default_values=dict(resolved.defaults),
        )
        feature_columns += [lookup.output_name(n) for n in resolved.features]
        if lookup.matched_timestamp_column:
            matched[lookup.matched_timestamp_column] = table
    unknown = [c for c in exclude_columns if c not in df.columns]
    if unknown:
        raise TrainingSetError(f"exclude_columns names {unknown}, which are not in the result.")
    df = df.drop(*exclude_columns)
    return TrainingSet(
        df=df,
        label=label,
        feature_columns=tuple(c for c in feature_columns if c not in exclude_columns),
        matched_timestamp_columns={c: t for c, t in matched.items() if c not in exclude_columns},
        table_versions=read_versions,
        join_plans=plans,
    )


def content_hash(df: DataFrame) -> str:
    """A SHA-256 of the schema and the multiset of rows: the same rows in any order and any
    file layout give the same hash; any changed value, added or lost row changes it."""
    columns = [F.col(c) for c in df.columns]
    wide = "decimal(38,0)"  # a sum of 64-bit hashes over many rows overflows a bigint
    row = df.select(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.xxhash64(*columns).cast(wide)).alias("xxhash64_sum"),
        F.sum(F.hash(*columns).cast(wide)).alias("murmur3_sum"),
    ).first()
    text = f"{df.schema.simpleString()}|{row['rows']}|{row['xxhash64_sum']}|{row['murmur3_sum']}"
    return hashlib.sha256(text.encode()).hexdigest()
