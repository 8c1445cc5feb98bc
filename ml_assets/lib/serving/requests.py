"""What the gateway does with a request before and after the model: parse the Databricks
invocation formats, validate keys and overrides, choose the served entity by traffic share.

Formats (``POST /serving-endpoints/{name}/invocations``), as Databricks Model Serving takes
them: ``{"dataframe_records": [{...}, ...]}``, ``{"dataframe_split": {"columns": [...],
"data": [[...], ...]}}``, and ``{"inputs": [...records...]}`` or ``{"inputs": {"col":
[...]}}``. Every row carries the entity key; it may also override features by name.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import random
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ml_assets.lib.serving.endpoint import Endpoint

FORMATS = ("dataframe_records", "dataframe_split", "inputs")


class RequestError(ValueError):
    """A request the gateway refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_invocation(body: bytes, *, max_rows: int) -> pd.DataFrame:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"The body is not valid JSON: {exc}.") from exc
    if not isinstance(payload, dict):
        raise RequestError(
            f"Expected a JSON object with one of {list(FORMATS)}, found {type(payload).__name__}."
        )
    given = [k for k in payload if k in FORMATS]
    extra = sorted(set(payload) - set(FORMATS) - {"params"})
    if len(given) != 1 or extra:
        raise RequestError(
            f"Expected exactly one of {list(FORMATS)} (and optionally 'params'); found keys "
            f"{sorted(payload)}."
        )
    kind = given[0]
    value = payload[kind]
    if kind == "dataframe_split":
        if not isinstance(value, dict) or not {"columns", "data"} <= set(value):
            raise RequestError("dataframe_split needs {'columns': [...], 'data': [[...], ...]}.")
        rows = value["data"]
        if not isinstance(rows, list) or any(
            not isinstance(r, list) or len(r) != len(value["columns"]) for r in rows
        ):
            raise RequestError(
                f"dataframe_split.data must be a list of rows of {len(value['columns'])} values."
            )
        _check_size(len(rows), max_rows)
        return pd.DataFrame(rows, columns=value["columns"])
    if kind == "inputs" and isinstance(value, dict):
        lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise RequestError("inputs as columns must map each column to a list of equal length.")
        _check_size(lengths.pop(), max_rows)
        return pd.DataFrame(value)
    if not isinstance(value, list) or any(not isinstance(r, dict) for r in value):
        raise RequestError(f"{kind} must be a list of records (objects).")
    _check_size(len(value), max_rows)
    return pd.DataFrame.from_records(value)


def _check_size(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise RequestError("The request holds no rows.")
    if rows > max_rows:
        raise RequestError(
            f"The request holds {rows} rows; at most {max_rows} are accepted per request. "
            "Split it into smaller batches.",
            status=413,
        )


def _is_integer(value: object) -> bool:
    """An integer (numpy's too, as pandas hands them out), or a float with no fraction."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, numbers.Real) and float(value).is_integer()


def _is_number(value: object) -> bool:
    """A finite number (NaN counts as missing); a bool is not a number."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return False
    return not math.isinf(float(value))


def validate_rows(
    frame: pd.DataFrame, keys: Mapping[str, str], overridable: Mapping[str, str]
) -> pd.DataFrame:
    """Keys present and integral in every row; other columns must be known features with
    the right kind ("double" or "string"). Returns the keys as int64 and overrides as typed."""
    problems = []
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        problems.append(f"every row needs {list(keys)}; missing column(s) {missing}")
    unknown = sorted(set(frame.columns) - set(keys) - set(overridable))
    if unknown:
        problems.append(
            f"unknown column(s) {unknown}: a request carries {list(keys)} and may override "
            f"features {sorted(overridable)}"
        )
    out = frame.copy()
    for key in (k for k in keys if k in frame.columns):
        values = frame[key]
        bad = [i for i, v in enumerate(values) if not _is_integer(v)]
        if bad:
            problems.append(f"{key} must be an integer in every row; rows {bad[:5]} are not")
        else:
            out[key] = values.astype("int64")
    for column in (c for c in frame.columns if c in overridable):
        kind = overridable[column]
        values = frame[column]
        if kind == "double":
            bad = [i for i, v in enumerate(values) if not pd.isna(v) and not _is_number(v)]
            if bad:
                problems.append(f"{column} must be a number (or null); rows {bad[:5]} are not")
            else:
                out[column] = pd.to_numeric(values).astype("float64")
        elif kind == "string":
            bad = [i for i, v in enumerate(values) if not pd.isna(v) and not isinstance(v, str)]
            if bad:
                problems.append(f"{column} must be a string (or null); rows {bad[:5]} are not")
    if problems:
        raise RequestError("Invalid request: " + "; ".join(problems) + ".")
    return out


def choose_route(endpoint: Endpoint, request_id: str | None, rng: random.Random) -> str:
    """The served entity for a request, by traffic share: the same request id always lands on
    the same one (a hash to 0..99); without one, a random draw."""
    routes = [r for r in endpoint.config.traffic_config.routes if r.traffic_percentage > 0]
    if request_id:
        point = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") % 100
    else:
        point = rng.randrange(100)
    edge = 0
    for route in routes:
        edge += route.traffic_percentage
        if point < edge:
            return route.served_model_name
    return routes[-1].served_model_name
