"""Online features: the latest row per entity of each feature table, and the training set's
lookups applied to those rows at request time.

Publishing keeps one row per entity (the greatest feature timestamp) with a hash of its
values, so a later publish writes only the keys whose row changed. Reading applies the same
``FeatureLookup`` as the training set: a row counts only if its feature time is at or before
the request time and within the lookback (a stale row is treated as no match), then the
contract's defaults fill the gaps, exactly as ``build_training_set`` does offline. What the
store cannot do is look into the past: it holds only the newest row, so a request time
before that row's time finds nothing (the offline join would find an older row).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ml_assets.lib.features.contracts import FeatureTableContract
from ml_assets.lib.training_sets.lookups import FeatureLookup, resolve

ROW_HASH = "_row_hash"


def latest_rows(table: DataFrame, contract: FeatureTableContract) -> DataFrame:
    """One row per entity: the one with the greatest feature timestamp (unique by contract)."""
    order = Window.partitionBy(*contract.entity_keys).orderBy(F.col(contract.timestamp_key).desc())
    return (
        table.withColumn("_rank", F.row_number().over(order))
        .where(F.col("_rank") == 1)
        .drop("_rank")
    )


def online_frame(rows: pd.DataFrame, contract: FeatureTableContract) -> pd.DataFrame:
    """The columns the store keeps, as it keeps them: timestamps as naive UTC, decimals as
    floats (the model reads them as doubles), plus a hash of the values for change detection."""
    columns = [*contract.entity_keys, contract.timestamp_key, *contract.feature_names]
    frame = rows[columns].copy()
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            frame[column] = pd.to_datetime(values, utc=True).dt.tz_localize(None)
        elif values.dtype == object and len(values) and _is_decimal(values):
            frame[column] = values.astype("float64")
    frame[ROW_HASH] = row_hashes(frame, columns)
    return frame


def _is_decimal(values: pd.Series) -> bool:
    import decimal

    first = values.dropna()
    return len(first) > 0 and isinstance(first.iloc[0], decimal.Decimal)


def row_hashes(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """SHA-1 of each row's values (as text, nulls as a marker): equal rows, equal hashes."""
    text = frame[list(columns)].astype(object).where(frame[list(columns)].notna(), "\x00null")
    joined = text.astype(str).agg("\x1f".join, axis=1)
    return joined.map(lambda s: hashlib.sha1(s.encode()).hexdigest())


@dataclass(frozen=True)
class PublishPlan:
    upserts: pd.DataFrame  # rows to write (new keys and changed rows)
    deletes: pd.DataFrame  # keys no longer in the offline table
    inserted: int
    updated: int
    unchanged: int


def plan_publish(latest: pd.DataFrame, stored: pd.DataFrame, keys: Sequence[str]) -> PublishPlan:
    """Compare the latest offline rows with the stored (keys, hash) pairs."""
    merged = latest.merge(
        stored[[*keys, ROW_HASH]].rename(columns={ROW_HASH: "_stored"}),
        on=list(keys),
        how="outer",
        indicator=True,
    )
    new = merged["_merge"] == "left_only"
    changed = (merged["_merge"] == "both") & (merged[ROW_HASH] != merged["_stored"])
    gone = merged["_merge"] == "right_only"
    upserts = merged.loc[new | changed, list(latest.columns)]
    return PublishPlan(
        upserts=upserts.reset_index(drop=True),
        deletes=merged.loc[gone, list(keys)].reset_index(drop=True),
        inserted=int(new.sum()),
        updated=int(changed.sum()),
        unchanged=int(((merged["_merge"] == "both") & ~changed).sum()),
    )


def apply_lookups(
    spine: pd.DataFrame,
    rows: Mapping[str, pd.DataFrame],
    lookups: Sequence[FeatureLookup],
    contracts: Mapping[str, FeatureTableContract] | None = None,
) -> pd.DataFrame:
    """The spine (keys and request time, per lookup's names) with each lookup's outputs from
    the stored latest rows (``rows`` by table name), as ``build_training_set`` computes them
    from the offline tables when the latest row is at or before the request time."""
    out = spine.copy()
    for lookup in lookups:
        resolved = resolve(lookup, contracts)
        contract = resolved.contract
        table = rows[str(contract.name)].rename(
            columns={
                **dict(zip(contract.entity_keys, lookup.lookup_keys, strict=True)),
                contract.timestamp_key: "_feature_ts",
                **{n: lookup.output_name(n) for n in resolved.features},
            }
        )
        outputs = [lookup.output_name(n) for n in resolved.features]
        joined = out.merge(
            table[[*lookup.lookup_keys, "_feature_ts", *outputs]], on=lookup.lookup_keys, how="left"
        )
        at = pd.to_datetime(joined[lookup.timestamp_lookup_key], utc=True)
        ts = pd.to_datetime(joined["_feature_ts"], utc=True)
        usable = ts.notna() & (ts <= at)
        if lookup.lookback_window is not None:
            usable &= (at - ts) <= pd.Timedelta(lookup.lookback_window)
        joined.loc[~usable, outputs] = np.nan
        if lookup.matched_timestamp_column:
            joined[lookup.matched_timestamp_column] = ts.where(usable)
        for column, default in resolved.defaults.items():
            joined[column] = joined[column].where(joined[column].notna(), default)
        out = joined.drop(columns=["_feature_ts"])
    return out


def seconds_between(later: pd.Series, earlier: pd.Series) -> pd.Series:
    return (pd.to_datetime(later, utc=True) - pd.to_datetime(earlier, utc=True)).dt.total_seconds()


def utc(moment: dt.datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
