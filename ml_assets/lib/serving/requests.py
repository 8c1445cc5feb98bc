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
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EXACT_FLOAT_INTEGERS = 2**53  # beyond this a float no longer names one integer
MAX_STRING_CHARS = 1024  # a string override longer than this is refused


class RequestError(ValueError):
    """A request the gateway refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _refuse_constant(name: str) -> object:
    raise RequestError(f"The body is not valid JSON: {name} is not a JSON value.")


def load_json(body: bytes) -> object:
    """Strict JSON (no NaN or Infinity); every failure is the client's, so a RequestError:
    the invocations and the serving-endpoints API read their bodies with it."""
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except RequestError:  # NaN or Infinity, said once
        raise
    except RecursionError:
        raise RequestError("The body is not valid JSON here: it is nested too deeply.") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit number
        raise RequestError(f"The body is not valid JSON: {exc}.") from None


def _columns(value: object) -> list[str]:
    if (
        not isinstance(value, list)
        or not all(isinstance(c, str) for c in value)
        or len(set(value)) != len(value)
    ):
        raise RequestError(
            "dataframe_split.columns must be a list of distinct column names (strings); "
            f"found {_describe(value)}."
        )
    return value


def _describe(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_invocation(body: bytes, *, max_rows: int) -> pd.DataFrame:
    payload = load_json(body)
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
        columns = _columns(value["columns"])
        rows = value["data"]
        if not isinstance(rows, list) or any(
            not isinstance(r, list) or len(r) != len(columns) for r in rows
        ):
            raise RequestError(
                f"dataframe_split.data must be a list of rows of {len(columns)} values."
            )
        _check_size(len(rows), max_rows)
        return pd.DataFrame(rows, columns=columns, dtype=object)
    if kind == "inputs" and isinstance(value, dict):
        lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise RequestError("inputs as columns must map each column to a list of equal length.")
        _check_size(lengths.pop(), max_rows)
        return pd.DataFrame(value, dtype=object)
    if not isinstance(value, list) or any(not isinstance(r, dict) for r in value):
        raise RequestError(f"{kind} must be a list of records (objects).")
    _check_size(len(value), max_rows)
    columns = list(dict.fromkeys(k for record in value for k in record))
    return pd.DataFrame([[r.get(c) for c in columns] for r in value], columns=columns, dtype=object)


def _check_size(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise RequestError("The request holds no rows.")
    if rows > max_rows:
        raise RequestError(
            f"The request holds {rows} rows; at most {max_rows} are accepted per request. "
            "Split it into smaller batches.",
            status=413,
        )


def _is_missing(value: object) -> bool:
    """JSON null (pandas may hand it out as NaN); never true of a list or an object."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_int64(value: object) -> bool:
    """An integer in the signed 64-bit range, or a float that names exactly one such integer
    (``7.0``); a bool is not an integer."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, numbers.Integral):
        return INT64_MIN <= int(value) <= INT64_MAX
    if isinstance(value, numbers.Real):
        number = float(value)
        return number.is_integer() and abs(number) <= EXACT_FLOAT_INTEGERS
    return False


def _is_number(value: object) -> bool:
    """A finite number that fits a double (NaN counts as missing); a bool is not a number."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer of hundreds of digits
        return False


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
        bad = [i for i, v in enumerate(values) if not _is_int64(v)]
        if bad:
            problems.append(
                f"{key} must be an integer from {INT64_MIN} to {INT64_MAX} in every row; "
                f"rows {bad[:5]} are not (first: {_describe(values.iloc[bad[0]])})"
            )
        else:
            out[key] = [int(v) for v in values]
            out[key] = out[key].astype("int64")
    for column in (c for c in frame.columns if c in overridable):
        kind = overridable[column]
        values = frame[column]
        if kind == "double":
            bad = [i for i, v in enumerate(values) if not _is_missing(v) and not _is_number(v)]
            if bad:
                problems.append(f"{column} must be a number (or null); rows {bad[:5]} are not")
            else:
                out[column] = [np.nan if _is_missing(v) else float(v) for v in values]
                out[column] = out[column].astype("float64")
        elif kind == "string":
            bad = [i for i, v in enumerate(values) if not _is_missing(v) and not isinstance(v, str)]
            if bad:
                problems.append(f"{column} must be a string (or null); rows {bad[:5]} are not")
            long = [
                i for i, v in enumerate(values) if isinstance(v, str) and len(v) > MAX_STRING_CHARS
            ]
            if long:
                problems.append(
                    f"{column} may hold at most {MAX_STRING_CHARS} characters; rows {long[:5]} "
                    "hold more"
                )
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
            return route.target
    return routes[-1].target
