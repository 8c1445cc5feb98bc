"""What clients send the gateway: every mistake is a RequestError (a 4xx) naming the problem,
never another exception (a 500). Hand-picked hostile payloads, then generated ones."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_assets.lib.serving.requests import (
    INT64_MAX,
    MAX_STRING_CHARS,
    RequestError,
    parse_invocation,
    validate_rows,
)

KEYS = {"user_id": "long"}
OVERRIDABLE = {"events_7d": "double", "plan_tier": "string"}


def judge(body: bytes) -> object:
    return validate_rows(parse_invocation(body, max_rows=1000), KEYS, OVERRIDABLE)


def records(*rows: dict) -> bytes:
    return json.dumps({"dataframe_records": list(rows)}).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (records({"user_id": 10**30}), "user_id must be an integer from -9223372036854775808"),
        (records({"user_id": 2**63}), f"to {INT64_MAX} in every row; rows [0]"),
        (records({"user_id": 1e20}), "user_id must be an integer"),
        (b'{"dataframe_records": [{"user_id": ' + b"9" * 5000 + b"}]}", "not valid JSON"),
        (records({"user_id": [7]}), "user_id must be an integer"),
        (records({"user_id": 7, "events_7d": [1, 2]}), "events_7d must be a number"),
        (records({"user_id": 7, "events_7d": {"a": 1}}), "events_7d must be a number"),
        (
            b'{"dataframe_records": [{"user_id": 7, "events_7d": 1' + b"0" * 400 + b"}]}",
            "events_7d must be a number",
        ),
        (records({"user_id": 7, "plan_tier": ["free"]}), "plan_tier must be a string"),
        (
            records({"user_id": 7, "plan_tier": "x" * (MAX_STRING_CHARS + 1)}),
            f"at most {MAX_STRING_CHARS} characters",
        ),
        (b'{"dataframe_split": {"columns": 3, "data": [[7]]}}', "columns must be a list"),
        (b'{"dataframe_split": {"columns": "user_id", "data": [[7]]}}', "columns must be a list"),
        (b'{"dataframe_split": {"columns": [1], "data": [[7]]}}', "columns must be a list"),
        (
            b'{"dataframe_split": {"columns": ["user_id", "user_id"], "data": [[7, 8]]}}',
            "distinct column names",
        ),
        (b'{"dataframe_records": [{"user_id": NaN}]}', "NaN is not a JSON value"),
        (b'{"dataframe_records": [{"user_id": 7, "events_7d": Infinity}]}', "Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_a_hostile_request_is_a_request_error_naming_the_problem(body, message):
    with pytest.raises(RequestError) as caught:
        judge(body)
    assert caught.value.status == 400
    assert message in str(caught.value)
    assert str(caught.value).count("not valid JSON") <= 1  # the reason is said once


def test_valid_keys_and_overrides_come_out_typed():
    frame = judge(records({"user_id": 7.0, "events_7d": 3}, {"user_id": INT64_MAX}))
    assert frame["user_id"].tolist() == [7, INT64_MAX] and str(frame["user_id"].dtype) == "int64"
    assert frame["events_7d"].iloc[0] == 3.0 and str(frame["events_7d"].dtype) == "float64"


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
COLUMN = st.sampled_from(["user_id", "events_7d", "plan_tier", "other"]) | st.text(max_size=8)
RECORD = st.dictionaries(COLUMN, JSON, max_size=4)
PAYLOAD = st.one_of(
    JSON,
    st.fixed_dictionaries({"dataframe_records": st.lists(RECORD, max_size=4) | JSON}),
    st.fixed_dictionaries(
        {"dataframe_split": st.fixed_dictionaries({"columns": JSON, "data": JSON})}
    ),
    st.fixed_dictionaries(
        {
            "dataframe_split": st.fixed_dictionaries(
                {"columns": st.lists(COLUMN, max_size=3), "data": st.lists(JSON, max_size=3)}
            )
        }
    ),
    st.fixed_dictionaries({"inputs": st.dictionaries(COLUMN, JSON, max_size=3) | JSON}),
    st.dictionaries(st.sampled_from(["inputs", "dataframe_records", "params", "x"]), JSON),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PAYLOAD)
def test_generated_payloads_raise_nothing_but_request_errors(payload):
    try:
        judge(json.dumps(payload).encode())
    except RequestError as exc:
        assert 400 <= exc.status < 500 and str(exc)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_generated_bytes_raise_nothing_but_request_errors(body):
    try:
        judge(body)
    except RequestError as exc:
        assert 400 <= exc.status < 500
