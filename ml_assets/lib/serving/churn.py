"""The churn model's request features, assembled online exactly as the training set is
offline: the same lookups (``CHURN_LOOKUPS``), defaults and account age at the request time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ml_assets.lib.serving.online import apply_lookups, seconds_between, utc
from ml_assets.lib.training_sets.churn import ACCOUNT_AGE, CHURN_LOOKUPS, ENTITY_KEY, LABEL_TS
from ml_assets.lib.training_sets.lookups import resolve

REQUEST_KEYS = (ENTITY_KEY,)


def churn_features(
    user_ids: Sequence[int], at: dt.datetime, rows: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    """One row per requested user (in order, repeats kept): the lookups' outputs, the matched
    feature times and the account age in whole days at ``at``."""
    spine = pd.DataFrame({ENTITY_KEY: list(user_ids), LABEL_TS: utc(at)})
    out = apply_lookups(spine, rows, CHURN_LOOKUPS)
    out[ACCOUNT_AGE] = np.floor(seconds_between(out[LABEL_TS], out["signup_ts"]) / 86_400)
    return out


def _servable() -> dict[str, str]:
    """The model-input columns the gateway assembles, with the signature type each has: the
    lookups' feature outputs (numbers as double, text as string) and the account age."""
    kinds = {}
    for lookup in CHURN_LOOKUPS:
        resolved = resolve(lookup)
        dtypes = {c.name: c.dtype for c in resolved.contract.table_spec.columns}
        for feature in resolved.features:
            dtype = dtypes[feature]
            if dtype == "timestamp":
                continue  # raw times are not model inputs (signup_ts becomes the age)
            kinds[lookup.output_name(feature)] = "string" if dtype == "string" else "double"
    return kinds | {ACCOUNT_AGE: "double"}


SERVABLE_INPUTS = _servable()
LOOKUP_CONTRACTS = tuple(resolve(lookup).contract for lookup in CHURN_LOOKUPS)
REQUEST_KEY_TYPES = {ENTITY_KEY: "long"}
