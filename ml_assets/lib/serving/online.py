"""Online features: the latest row per entity of each feature table, and the training set's
lookups applied to those rows at request time.

Publishing keeps one row per entity (the greatest feature timestamp) with a hash of its
values, so a later publish writes only the keys whose row changed. Reading applies the same
``FeatureLookup`` as the training set: a row counts only if its feature time is at or before
the request time and within the lookback (a stale row is treated as no match), then the
contract's defaults fill the gaps, exactly as ``build_training_set`` does offline. What the
store cannot do is look into the past: it holds only the newest row, so a request time
before that row's time finds nothing (the offline join would find an older row); a replay of
past days publishes each day's rows first (``rows_as_of``), as the daily publish did then.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ml_assets.lib.features.contracts import FeatureTableContract
from ml_assets.lib.training_sets.lookups import ResolvedLookup
from ml_assets.lib.training_sets.reference import reference_point_in_time_join

ROW_HASH = "_row_hash"


def latest_rows(table: DataFrame, contract: FeatureTableContract) -> DataFrame:
    """One row per entity: the one with the greatest feature timestamp (unique by contract)."""
    order = Window.partitionBy(*contract.entity_keys).orderBy(F.col(contract.timestamp_key).desc())
    return (
        table.withColumn("_rank", F.row_number().over(order))
        .where(F.col("_rank") == 1)
        .drop("_rank")
    )


def rows_as_of(rows: pd.DataFrame, contract: FeatureTableContract, as_of: dt.datetime):
    """What a publish at ``as_of`` stored (``latest_rows`` of the table as it stood then): per
    entity, the row with the greatest feature time at or before ``as_of``. For replaying past
    days against a store that holds one row per entity; ``rows`` may be any superset of the
    candidates (e.g. the rows within the lookback before the first replayed day)."""
    times = pd.to_datetime(rows[contract.timestamp_key], utc=True)
    cutoff = pd.Timestamp(as_of)
    cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff.tz_convert("UTC")
    before = rows[times <= cutoff]
    if before.empty:
        return before
    keys = list(contract.entity_keys)
    newest = times[times <= cutoff].groupby([before[k] for k in keys]).idxmax()
    return before.loc[newest.to_numpy()].reset_index(drop=True)


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


Record = dict[str, object]


def apply_lookups(
    spine: Sequence[Record],
    rows: Mapping[str, Mapping[tuple, Record]],
    lookups: Sequence[ResolvedLookup],
) -> list[Record]:
    """Each spine record (keys and request time, per lookup's names) with each lookup's
    outputs from the stored latest rows (``rows``: table name -> key tuple -> record).

    The point-in-time rule is the reference join's, the one the Spark join is tested against
    (``reference_point_in_time_join``), applied to each record and the one stored row of its
    key: so a row counts only at or before the request time and within the lookback, and
    the defaults fill what is missing, as ``build_training_set`` does offline. Plain records,
    one key at a time: a request costs microseconds here, and the skew check runs this code."""
    out = [dict(record) for record in spine]
    for resolved in lookups:
        lookup = resolved.lookup
        table = rows[str(resolved.contract.name)]
        joined = []
        for record in out:
            row = table.get(tuple(record[k] for k in lookup.lookup_keys))
            joined += reference_point_in_time_join(
                [record],
                [] if row is None else [_as_lookup_row(row, resolved)],
                lookup_key=lookup.lookup_keys,
                timestamp_lookup_key=lookup.timestamp_lookup_key,
                feature_timestamp_key=_FEATURE_TS,
                feature_names=resolved.outputs,
                lookback_window=lookup.lookback_window,
                default_values=resolved.defaults,
            )
        out = joined
    return out


_FEATURE_TS = "__feature_ts"


def _as_lookup_row(row: Record, resolved: ResolvedLookup) -> Record:
    """A stored row under the names the lookup outputs (as ``ResolvedLookup.select_from``
    renames the offline table): spine key names, the feature time, the output names."""
    contract, lookup = resolved.contract, resolved.lookup
    out: Record = {
        spine_key: row[key]
        for key, spine_key in zip(contract.entity_keys, lookup.lookup_keys, strict=True)
    }
    out[_FEATURE_TS] = row[contract.timestamp_key]
    out.update({lookup.output_name(f): row[f] for f in resolved.features})
    if lookup.matched_timestamp_column:
        out[lookup.matched_timestamp_column] = row[contract.timestamp_key]
    return out
