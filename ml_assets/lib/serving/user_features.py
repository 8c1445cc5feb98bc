"""A user model's request features, assembled online exactly as its training set is offline:
the same lookups (``USER_LOOKUPS``, shared by every model over users), defaults and account
age at the request time."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from ml_assets.lib.serving.online import apply_lookups
from ml_assets.lib.training_sets.lookups import resolve
from ml_assets.lib.training_sets.users import ACCOUNT_AGE, ENTITY_KEY, LABEL_TS, USER_LOOKUPS

RESOLVED_LOOKUPS = tuple(resolve(lookup) for lookup in USER_LOOKUPS)
LOOKUP_CONTRACTS = tuple(r.contract for r in RESOLVED_LOOKUPS)


def user_records(
    user_ids: Sequence[int], at: dt.datetime, rows: Mapping[str, Mapping[tuple, dict]]
) -> list[dict]:
    """One record per requested user (in order, repeats kept): the lookups' outputs, the
    matched feature times and the account age in whole days at ``at`` (a UTC datetime)."""
    records = apply_lookups(
        [{ENTITY_KEY: u, LABEL_TS: at} for u in user_ids], rows, RESOLVED_LOOKUPS
    )
    for record in records:
        signup = record.get("signup_ts")
        record[ACCOUNT_AGE] = (
            None if signup is None else math.floor((at - signup).total_seconds() / 86_400)
        )
    return records


def lookup_misses(record: Mapping[str, object]) -> list[str]:
    """The feature tables whose lookup matched no row for this record (within its lookback):
    their outputs are the training set's defaults."""
    return [
        str(r.contract.name)
        for r in RESOLVED_LOOKUPS
        if r.lookup.matched_timestamp_column is not None
        and record.get(r.lookup.matched_timestamp_column) is None
    ]


def user_features(
    user_ids: Sequence[int], at: dt.datetime, rows: Mapping[str, Mapping[tuple, dict]]
) -> pd.DataFrame:
    return pd.DataFrame.from_records(user_records(user_ids, at, rows))


def _servable() -> dict[str, str]:
    """The model-input columns the gateway assembles, with the signature type each has: the
    lookups' feature outputs (numbers as double, text as string) and the account age."""
    kinds = {}
    for resolved in RESOLVED_LOOKUPS:
        lookup = resolved.lookup
        dtypes = {c.name: c.dtype for c in resolved.contract.table_spec.columns}
        for feature in resolved.features:
            dtype = dtypes[feature]
            if dtype == "timestamp":
                continue  # raw times are not model inputs (signup_ts becomes the age)
            kinds[lookup.output_name(feature)] = "string" if dtype == "string" else "double"
    return kinds | {ACCOUNT_AGE: "double"}


SERVABLE_INPUTS = _servable()
REQUEST_KEY_TYPES = {ENTITY_KEY: "long"}
