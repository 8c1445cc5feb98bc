"""A naive, pure-Python point-in-time join: the expected result the Spark join is held to.

Written for obviousness, not speed (Feast's ``find_latest_record`` plays this role for its
offline stores): for each spine row, scan every feature row of its key.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence


def reference_point_in_time_join(
    spine_rows: Sequence[Mapping[str, object]],
    feature_rows: Sequence[Mapping[str, object]],
    *,
    lookup_key: Sequence[str],
    timestamp_lookup_key: str,
    feature_timestamp_key: str,
    feature_names: Sequence[str],
    lookback_window: dt.timedelta | None = None,
    default_values: Mapping[str, object] | None = None,
) -> list[dict[str, object]]:
    """Each spine row (as a dict) extended with the features of its latest usable row."""
    rows_of_key = defaultdict(list)
    for row in feature_rows:
        rows_of_key[tuple(row[k] for k in lookup_key)].append(row)
    out = []
    for spine in spine_rows:
        t = spine[timestamp_lookup_key]
        key = tuple(spine[k] for k in lookup_key)
        best = None
        if t is not None and None not in key:
            for row in rows_of_key.get(key, ()):
                ts = row[feature_timestamp_key]
                if ts is None or ts > t:
                    continue
                if lookback_window is not None and t - ts > lookback_window:
                    continue
                if best is None or ts > best[feature_timestamp_key]:
                    best = row
        joined = dict(spine)
        for name in feature_names:
            value = best[name] if best is not None else None
            if value is None and default_values and name in default_values:
                value = default_values[name]
            joined[name] = value
        out.append(joined)
    return out
