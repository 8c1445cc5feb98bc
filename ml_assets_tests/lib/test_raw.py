"""Raw-layer parsing on hand-built lines: every line is kept, quarantined or a duplicate."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ml_assets.lib.producer_contract import Field, summed_field_counts, unknown_field_counts
from ml_assets.lib.raw import (
    IngestionCounts,
    classify_events,
    classify_user_changes,
    ingestion_counts,
    kept_events,
    quarantined,
    scd_history,
    summed_counts,
)

D = dt.date(2026, 1, 10)


def ev(
    event_id="e1",
    user_id=1,
    event_type="login",
    ts="2026-01-10T10:00:00.000Z",
    revenue=None,
    **extra,
):
    rec = {
        "event_id": event_id,
        "user_id": user_id,
        "event_type": event_type,
        "event_ts": ts,
        "session_id": "s1",
        "revenue": revenue,
        "device": "web",
        **extra,
    }
    return json.dumps(rec)


def landed(spark, rows):
    """``(line, landing_date)`` pairs as the landing zone gives them (valid UTF-8)."""
    return spark.createDataFrame(
        [(line, day, False) for line, day in rows],
        "value string, landing_date date, invalid_encoding boolean",
    )


def classify(spark, lines, landing=D, known=(1, 2)):
    df = landed(spark, [(line, landing) for line in lines])
    users = spark.createDataFrame([(u,) for u in known], "user_id bigint")
    return classify_events(df, users, late_arrival_days=3)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"event_id": "e1", "user_id": 1', "malformed_json"),
        ("[1, 2]", "malformed_json"),
        (ev(event_id=None), "missing_event_id"),
        (ev(user_id=None), "null_user_id"),
        (ev(user_id="abc"), "invalid_user_id"),
        (ev(user_id=1.7), "invalid_user_id"),
        (ev(ts="yesterday"), "invalid_event_ts"),
        (ev(event_type="refund"), "unknown_event_type"),
        (ev(event_type="purchase", revenue="12,50"), "invalid_revenue"),
        (ev(ts="2026-01-11T00:00:00.000Z"), "future_timestamp"),
        (ev(ts="2026-01-06T23:59:59.999Z"), "too_late"),
        (ev(event_type="purchase"), "missing_revenue"),
        (ev(event_type="purchase", revenue=-5.0), "negative_revenue"),
        (ev(revenue=3.0), "revenue_on_non_purchase"),
        (ev(user_id=999), "unknown_user_id"),
        # the producer contract: strict JSON types, bounded strings, no control characters
        (ev(user_id="7"), "invalid_user_id"),
        (ev(user_id=7.0), "invalid_user_id"),
        (ev(user_id=2**63), "invalid_user_id"),
        (ev(user_id=1e20), "invalid_user_id"),
        (ev(event_type="purchase", revenue="12.5"), "invalid_revenue"),
        (ev(event_type="purchase", revenue=True), "invalid_revenue"),
        (ev(event_id=7), "invalid_event_id"),
        (ev(event_id=True), "invalid_event_id"),
        (ev(event_id={"id": "e1"}), "invalid_event_id"),
        (ev(event_id="x" * 129), "event_id_too_long"),
        (ev(session_id="s" * 10_000_000), "session_id_too_long"),
        (ev(session_id=12), "invalid_session_id"),
        (ev(device="w\x00eb"), "device_has_control_characters"),
        (ev(device="web\n"), "device_has_control_characters"),
        (ev().replace("s1", "s\x7f1"), "session_id_has_control_characters"),  # a raw DEL
        (ev().replace("s1", "s\t1"), "malformed_json"),  # a raw tab: not JSON
        (ev(device="fridge"), "unknown_device"),
        (ev(device=3), "unknown_device"),
        (ev(event_type=["login"]), "unknown_event_type"),
        (ev(ts=1767952800), "invalid_event_ts"),
        (ev(ts="2026-01-10"), "invalid_event_ts"),
        (ev(ts="2026-01-10T25:00:00Z"), "invalid_event_ts"),
        ('{"event_id": "e1", "event_id": "e2", "user_id": 1}', "duplicate_field"),
        (ev() + " trailing", "malformed_json"),
        ('{"revenue": 1e400}', "malformed_json"),
        ("", "malformed_json"),
    ],
)
def test_each_kind_of_bad_line_is_quarantined_with_its_reason(spark, line, reason):
    rows = quarantined(classify(spark, [line])).collect()
    assert [(r.reason, r.line) for r in rows] == [(reason, line)]


def test_a_line_that_is_not_utf8_is_quarantined_as_invalid_encoding_before_anything_else(spark):
    df = spark.createDataFrame(
        [('{"event_id": "caf\\xe9"}', D, True), (ev(), D, False)],
        "value string, landing_date date, invalid_encoding boolean",
    )
    classified = classify_events(
        df, spark.createDataFrame([(1,)], "user_id bigint"), late_arrival_days=3
    )
    assert [(r.reason, r.line) for r in quarantined(classified).collect()] == [
        ("invalid_encoding", '{"event_id": "caf\\xe9"}')
    ]
    assert kept_events(classified).count() == 1


def test_unknown_fields_are_kept_out_of_the_table_and_counted_by_name(spark):
    classified = classify(
        spark, [ev("e1", coupon="X"), ev("e2", coupon="Y", referer="r"), ev("e3"), "garbage"]
    )
    assert sorted(r.event_id for r in kept_events(classified).collect()) == ["e1", "e2", "e3"]
    assert unknown_field_counts(classified) == {"coupon": 2, "referer": 1}


def test_the_counts_of_batches_add_up_reason_by_reason_and_field_by_field():
    one = IngestionCounts(10, 7, 2, 1, {"malformed_json": 2})
    two = IngestionCounts(5, 3, 2, 0, {"unknown_user_id": 1, "malformed_json": 1})
    assert summed_counts([one, two]) == IngestionCounts(
        15, 10, 4, 1, {"malformed_json": 3, "unknown_user_id": 1}
    )
    assert list(summed_counts([one, two]).by_reason) == ["malformed_json", "unknown_user_id"]
    assert summed_counts([]) == IngestionCounts(0, 0, 0, 0, {})
    fields = [{"coupon": 2, "b": 1, "a": 1}, {"referer": 4, "coupon": 3}]
    assert summed_field_counts(fields) == {"coupon": 5, "referer": 4, "a": 1, "b": 1}
    assert summed_field_counts(fields, limit=2) == {"coupon": 5, "referer": 4}


def test_unknown_names_alike_in_their_first_64_characters_are_counted_together(spark):
    long = "x" * 64
    classified = classify(spark, [ev("e1", **{long + "a": 1}), ev("e2", **{long + "b": 1})])
    assert unknown_field_counts(classified) == {long: 2}


def test_a_contract_field_is_refused_when_its_declaration_is_inconsistent():
    with pytest.raises(ValueError, match="allowed values and patterns are for strings"):
        Field("user_id", "integer", allowed=("1",))
    with pytest.raises(ValueError, match="json_type must be one of"):
        Field("user_id", "int")
    with pytest.raises(ValueError, match="expected letters, digits and underscores"):
        Field("user_id') as x, ('", "string")


def test_valid_lines_are_kept_with_types_and_late_ones_go_to_their_event_date(spark):
    on_time = ev("e1", ts="2026-01-10T23:59:59.999Z")
    late = ev("e2", user_id=2, event_type="purchase", revenue=12.5, ts="2026-01-07T00:00:00.000Z")
    got = {r.event_id: r for r in kept_events(classify(spark, [on_time, late])).collect()}
    assert got["e1"].event_date == D and got["e1"].landing_date == D
    assert got["e1"].event_ts == dt.datetime(2026, 1, 10, 23, 59, 59, 999000)
    assert got["e2"].event_date == dt.date(2026, 1, 7) and got["e2"].revenue == 12.5


def test_partition_of_a_line_is_its_event_date_in_the_window_else_its_landing_date(spark):
    classified = classify(
        spark,
        [
            ev("a", ts="2026-01-08T12:00:00Z"),  # late but in window -> event date
            ev("b", ts="2026-01-08T12:00:00Z", user_id=None),  # bad, but dated -> event date
            ev("c", ts="2026-03-01T00:00:00Z"),  # future -> landing date
            "garbage",  # malformed -> landing date
        ],
    )
    parts = {r.value[:40]: r.partition_date for r in classified.collect()}
    assert sorted(parts.values()) == [dt.date(2026, 1, 8)] * 2 + [D] * 2


def test_duplicates_keep_the_first_landed_copy_and_are_counted_not_quarantined(spark):
    line = ev("e1")
    df = landed(spark, [(line, D), (line, dt.date(2026, 1, 11)), (ev("e1", user_id=None), D)])
    classified = classify_events(
        df, spark.createDataFrame([(1,)], "user_id bigint"), late_arrival_days=3
    )
    kept = kept_events(classified).collect()
    assert [(r.event_id, r.landing_date) for r in kept] == [("e1", D)]
    counts = ingestion_counts(classified)
    assert (counts.lines, counts.kept, counts.quarantined, counts.duplicates) == (3, 1, 1, 1)
    assert counts.by_reason == {"null_user_id": 1}


def test_every_copy_of_a_repeated_id_gets_one_outcome_and_the_first_landed_is_kept(spark):
    """Valid copies of one event id: the first landed is kept (same day: the line text breaks
    the tie), the others are duplicates, an exact copy included; an invalid copy is
    quarantined, not ranked; ids seen once and lines without an id keep their own outcome."""
    later = dt.date(2026, 1, 11)
    copy = ev("e1")
    rows = [
        (copy, later),  # landed later: a duplicate of the two below
        (copy, D),  # the same text twice on the same day: one kept, one duplicate
        (copy, D),
        (ev("e1", session_id="s2"), D),  # same id and day, text sorting after: a duplicate
        (ev("e1", user_id=None), D),  # invalid copy: quarantined, not ranked
        (ev("e2"), D),  # once: kept
        (ev("e3", user_id=None), D),  # once, invalid
        (json.dumps({"user_id": 1, "event_ts": "2026-01-10T10:00:00Z"}), D),  # no id
    ]
    classified = classify_events(
        landed(spark, rows), spark.createDataFrame([(1,)], "user_id bigint"), late_arrival_days=3
    )
    outcomes = sorted(
        (r.event_id or "", r.landing_date, r.outcome, r.reason or "") for r in classified.collect()
    )
    assert outcomes == [
        ("", D, "quarantined", "missing_event_id"),
        ("e1", D, "duplicate", ""),
        ("e1", D, "duplicate", ""),
        ("e1", D, "kept", ""),
        ("e1", D, "quarantined", "null_user_id"),
        ("e1", later, "duplicate", ""),
        ("e2", D, "kept", ""),
        ("e3", D, "quarantined", "null_user_id"),
    ]
    kept = {r.event_id: r.session_id for r in kept_events(classified).collect()}
    assert kept == {"e1": "s1", "e2": "s1"}


def change(
    cid="c1",
    user_id=1,
    kind="signup",
    at="2026-01-01T00:00:00Z",
    tier="free",
    country="US",
    status="active",
    signup="2026-01-01T00:00:00Z",
):
    return json.dumps(
        {
            "change_id": cid,
            "user_id": user_id,
            "change_type": kind,
            "changed_at": at,
            "plan_tier": tier,
            "country": country,
            "status": status,
            "signup_at": signup,
        }
    )


def test_user_changes_become_scd_history_and_bad_ones_are_quarantined(spark):
    lines = [
        change("c1"),
        change("c2", kind="plan_change", at="2026-01-05T00:00:00Z", tier="premium"),
        change("c2", kind="plan_change", at="2026-01-05T00:00:00Z", tier="premium"),  # dup
        change("c3", kind="status_change", at="2026-01-09T00:00:00Z", status="closed"),
        change("c4", kind="plan_change", at="2026-01-09T00:00:00Z", tier="basic"),  # conflict
        change("c5", user_id=None),
        change("c6", tier="gold"),
        change("c7", country="usa"),
        change("c8", at="2025-12-01T00:00:00Z"),  # before signup
        '{"change_id": "c9"',
    ]
    df = landed(spark, [(x, D) for x in lines])
    classified = classify_user_changes(df)
    history = sorted(scd_history(classified).collect(), key=lambda r: r.valid_from)
    assert [(r.change_id, r.is_current) for r in history] == [
        ("c1", False),
        ("c2", False),
        ("c3", True),
    ]
    assert history[0].valid_to == history[1].valid_from
    assert history[2].valid_to is None and history[2].status == "closed"
    reasons = sorted(r.reason for r in quarantined(classified).collect())
    assert reasons == [
        "change_before_signup",
        "conflicting_change_same_instant",
        "invalid_country",
        "malformed_json",
        "null_user_id",
        "unknown_plan_tier",
    ]
    counts = ingestion_counts(classified)
    assert (counts.lines, counts.kept, counts.quarantined, counts.duplicates) == (10, 3, 6, 1)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (change(cid=None), "missing_change_id"),
        (change(cid=""), "missing_change_id"),
        (change(cid=5), "invalid_change_id"),
        (change(user_id="1"), "invalid_user_id"),
        (change(at="soon"), "invalid_changed_at"),
        (change(at="2026-13-01T00:00:00Z"), "invalid_changed_at"),
        (change(signup=None), "missing_signup_at"),
        (change(signup="2026-01-01 00:00"), "invalid_signup_at"),
        (change(kind="upgrade"), "unknown_change_type"),
        (change(status="paused"), "unknown_status"),
        (change(status="active\x00"), "status_has_control_characters"),
        (change(country="U\x00"), "country_has_control_characters"),
        (change(at="2026-01-11T00:00:00Z"), "future_timestamp"),
    ],
)
def test_each_kind_of_bad_change_is_quarantined_with_its_reason(spark, line, reason):
    classified = classify_user_changes(landed(spark, [(line, D)]))
    assert [r.reason for r in quarantined(classified).collect()] == [reason]
