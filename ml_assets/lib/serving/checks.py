"""Training-serving skew: do the online features equal the offline point-in-time join?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ml_assets.lib.quality import CheckOutcome


def _same(a: object, b: object, tolerance: float) -> bool:
    missing_a, missing_b = pd.isna(a), pd.isna(b)
    if missing_a or missing_b:
        return bool(missing_a and missing_b)
    if isinstance(a, pd.Timestamp | np.datetime64) or isinstance(b, pd.Timestamp | np.datetime64):
        return _utc(a) == _utc(b)  # Spark hands back naive UTC, the store aware UTC
    try:
        return abs(float(a) - float(b)) <= tolerance * max(1.0, abs(float(b)))
    except (TypeError, ValueError):
        return str(a) == str(b)


def _plain(value: object) -> object:
    """numpy scalars as Python values, so a message reads 2.5, not np.float64(2.5)."""
    return value.item() if isinstance(value, np.generic) else value


def _utc(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def online_matches_offline(
    online: pd.DataFrame,
    offline: pd.DataFrame,
    key: str,
    columns: Sequence[str],
    *,
    tolerance: float = 1e-9,
) -> CheckOutcome:
    """Row by row on ``key``: every column equal (numbers within a relative ``tolerance``,
    nulls equal only to nulls). Names the first differences: user, column, online, offline."""
    left = online.set_index(key)
    right = offline.set_index(key)
    missing = sorted(set(right.index) - set(left.index))
    differences = []
    for entity in right.index.intersection(left.index):
        for column in columns:
            a, b = left.at[entity, column], right.at[entity, column]
            if not _same(a, b, tolerance):
                differences.append((entity, column, a, b))
    rows = len({d[0] for d in differences})
    shown = [
        f"{key}={_plain(e)} {c}: online {_plain(a)!r}, offline {_plain(b)!r}"
        for e, c, a, b in differences[:5]
    ]
    passed = not differences and not missing
    return CheckOutcome(
        passed=passed,
        description=(
            f"{len(right)} sampled entities: the online features equal the offline point-in-time "
            f"join on {len(columns)} columns"
            if passed
            else f"{rows} of {len(right)} sampled entities differ ({len(differences)} values), "
            f"{len(missing)} missing online; e.g. " + "; ".join(shown)
        ),
        observed={
            "entities_sampled": len(right),
            "entities_differing": rows,
            "values_differing": len(differences),
            "entities_missing_online": len(missing),
            "columns_compared": len(columns),
        },
    )
