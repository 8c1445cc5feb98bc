"""The demo source: deterministic, realistic signal, and dirt whose ground truth is exact."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ml_assets.lib.raw import classify_events, classify_user_changes, ingestion_counts, scd_history
from ml_assets.lib.source import (
    SCALES,
    BackdatedDowngrades,
    BehaviourShift,
    ChangeDirtRates,
    DirtRates,
    SourceConfig,
    _iso_timestamps,
    land,
    simulate,
)
from ml_assets.resources.landing import LandingZone

TINY = SCALES["tiny"]
# Big enough for the signal to be measurable, small enough to simulate in about a second.
SIGNAL = SourceConfig(users=3000, days=120, history_days=120, seed=11)


def _digest(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.jsonl"))
    }


def test_landing_is_deterministic_and_a_prefix_lands_the_same_files(tmp_path):
    first, second, prefix = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    summary = land(TINY, first)
    land(TINY, second)
    assert _digest(first) == _digest(second)
    assert len(summary.dates) == TINY.days
    assert (first / "events/date=2026-01-01/events.jsonl").is_file()
    assert (first / "users/date=2026-01-01/changes.jsonl").is_file()
    through = TINY.start_date + dt.timedelta(days=9)
    land(TINY, prefix, through=through)
    full = _digest(first)
    assert _digest(prefix) == {
        k: v for k, v in full.items() if k.split("=")[1][:10] <= str(through)
    }


def test_a_config_with_unknown_keys_or_impossible_rates_is_refused():
    with pytest.raises(ValidationError, match="extra"):
        SourceConfig(userz=10)
    with pytest.raises(ValidationError):
        DirtRates(late=0.9)


@pytest.fixture(scope="module")
def business():
    return simulate(SIGNAL)


def test_engagement_decays_in_the_weeks_before_a_user_churns(business):
    ev, users = business.events, business.users
    churned = users[
        (users.churn_ts > pd.Timestamp("2026-03-15"))
        & (users.churn_ts < pd.Timestamp("2026-04-30"))
        & (users.signup_ts < pd.Timestamp("2025-12-01"))
    ]
    logins = ev[ev.event_type == "login"].merge(churned[["user_id", "churn_ts"]], on="user_id")
    days_before = (logins.churn_ts - logins.event_ts).dt.total_seconds() / 86_400
    last_week = ((days_before >= 0) & (days_before < 7)).sum() / 7
    month_before = ((days_before >= 35) & (days_before < 63)).sum() / 28
    assert len(churned) > 50
    assert last_week < 0.35 * month_before
    # nobody starts a session after churning (a session's last clicks may run minutes over)
    assert (days_before > -0.05).all()


def test_purchases_depend_on_plan_tier(business):
    ev = business.events
    tier = business.users.set_index("user_id").plan_tier
    sessions = ev[ev.event_type == "login"].user_id.map(tier).value_counts()
    purchases = ev[ev.event_type == "purchase"].user_id.map(tier).value_counts()
    rate = purchases / sessions
    assert rate["premium"] > 1.5 * rate["basic"] > 1.5 * 1.5 * rate["free"] * 0.9


def test_activity_has_a_weekly_rhythm_with_busier_weekends(business):
    per_day = business.events.groupby(business.events.event_ts.dt.normalize()).size()
    by_weekday = per_day.groupby(per_day.index.weekday).mean()
    assert by_weekday[[5, 6]].mean() > 1.1 * by_weekday[[1, 2]].mean()


def test_accounts_are_closed_only_after_the_user_churned(business):
    closed = business.changes[business.changes.change_type == "status_change"]
    churn = business.users.set_index("user_id").churn_ts
    assert len(closed) > 100
    assert (closed.status == "closed").all()
    assert (closed.changed_at > closed.user_id.map(churn)).all()


def test_ingestion_reproduces_the_injected_dirt_exactly(tmp_path, spark_resource):
    config = SourceConfig(
        users=300,
        days=14,
        history_days=30,
        seed=5,
        dirt=DirtRates(
            duplicate=0.02,
            late=0.05,
            null_user_id=0.01,
            unknown_user_id=0.01,
            malformed=0.01,
            future_timestamp=0.01,
            negative_revenue=0.2,
        ),
        change_dirt=ChangeDirtRates(duplicate=0, null_user_id=0, malformed=0),
    )
    summary = land(config, tmp_path)
    truth = simulate(config)
    zone = LandingZone(root=str(tmp_path), spark=spark_resource)
    changes = classify_user_changes(zone.read_lines("users").lines)
    users = scd_history(changes).select("user_id")
    classified = classify_events(zone.read_lines("events").lines, users, late_arrival_days=3)
    counts = ingestion_counts(classified)
    injected = summary.injected_events
    assert counts.lines == summary.event_lines == len(truth.events) + injected["duplicate"]
    assert counts.duplicates == injected["duplicate"]
    assert counts.by_reason == {
        reason: n
        for reason, n in {
            "malformed_json": injected["malformed"],
            "null_user_id": injected["null_user_id"],
            "unknown_user_id": injected["unknown_user_id"],
            "future_timestamp": injected["future_timestamp"],
            "negative_revenue": injected["negative_revenue"],
        }.items()
        if n
    }
    assert counts.kept == len(truth.events) - sum(counts.by_reason.values())
    assert all(n > 0 for n in injected.values())
    late = classified.where("outcome = 'kept' AND landing_date > event_date").count()
    assert late == injected["late"]
    assert np.isclose(injected["late"], 0.05 * len(truth.events), rtol=0.25)


def test_landing_through_a_day_before_the_calendar_writes_nothing(tmp_path):
    summary = land(TINY, tmp_path, through=TINY.start_date - dt.timedelta(days=1))
    assert (summary.dates, summary.event_lines, summary.change_lines) == ([], 0, 0)
    assert not list(tmp_path.rglob("*.jsonl"))


def test_a_behaviour_shift_thins_sessions_from_its_date_only():
    start = TINY.start_date + dt.timedelta(days=50)
    drifted = simulate(TINY.model_copy(update={"behaviour_shift": BehaviourShift(start=start)}))
    clean = simulate(TINY)

    def sessions_per_day(events: pd.DataFrame) -> pd.Series:
        return events.groupby(events.event_ts.dt.normalize()).session_id.nunique()

    before = clean.events[clean.events.event_ts < pd.Timestamp(start)]
    pd.testing.assert_frame_equal(
        drifted.events[drifted.events.event_ts < pd.Timestamp(start)].reset_index(drop=True),
        before.reset_index(drop=True),
    )
    ratio = sessions_per_day(drifted.events).iloc[52:].sum() / (
        sessions_per_day(clean.events).iloc[52:].sum()
    )
    assert 0.3 < ratio < 0.5  # session_rate 0.4
    pd.testing.assert_frame_equal(drifted.users, clean.users)  # churn itself is unchanged


def test_backdated_downgrades_claim_a_time_before_the_churn_and_land_after_it(tmp_path):
    leaky = TINY.model_copy(update={"backdated_downgrades": BackdatedDowngrades()})
    changes = simulate(leaky).changes
    backdated = changes[changes.known_at > changes.changed_at]
    churn = simulate(leaky).users.set_index("user_id").churn_ts
    assert len(backdated) > 30
    assert (backdated.plan_tier == "free").all() and (backdated.change_type == "plan_change").all()
    assert (backdated.changed_at < backdated.user_id.map(churn)).all()  # claims: before churn
    assert (backdated.known_at > backdated.user_id.map(churn)).all()  # written: after it
    clean = simulate(TINY).changes
    assert (clean.known_at == clean.changed_at).all()
    land(leaky, tmp_path)
    lines = [
        (p.parent.name.removeprefix("date="), line)
        for p in (tmp_path / "users").rglob("*.jsonl")
        for line in p.read_text().splitlines()
    ]
    some = backdated[backdated.known_at >= pd.Timestamp(TINY.start_date)].iloc[0]
    landed_on = [day for day, line in lines if some.change_id in line]
    assert landed_on == [some.known_at.date().isoformat()]
    assert all("known_at" not in line for _, line in lines)  # not a landed field
    with pytest.raises(ValidationError, match="must not exceed"):
        BackdatedDowngrades(min_days_before_churn=30, max_days_before_churn=10)


def test_landed_timestamps_are_iso_8601_with_milliseconds_as_python_writes_them():
    rng = np.random.default_rng(3)
    ms = rng.integers(-40 * 365 * 86_400_000, 60 * 365 * 86_400_000, 5000)
    values = np.concatenate(
        [
            ms.astype("datetime64[ms]"),
            np.array(["2024-02-29T23:59:59.999", "1969-12-31T23:59:59.001", "NaT"], "M8[ms]"),
        ]
    ).astype("datetime64[ns]")
    expected = [
        None if pd.isna(t) else t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        for t in pd.to_datetime(values)
    ]
    assert _iso_timestamps(values).to_pylist() == expected
    assert expected[-3:-1] == ["2024-02-29T23:59:59.999Z", "1969-12-31T23:59:59.001Z"]
    with pytest.raises(ValueError, match="whole milliseconds"):
        _iso_timestamps(np.array(["2026-01-01T00:00:00.0001"], "M8[ns]"))


def test_a_day_nothing_lands_on_gets_an_empty_file_and_every_line_lands_once(tmp_path):
    config = SourceConfig(users=2, days=20, history_days=0, seed=3)
    summary = land(config, tmp_path)
    files = {kind: sorted((tmp_path / kind).rglob("*.jsonl")) for kind in ("events", "users")}
    assert all(len(found) == config.days for found in files.values())
    sizes = [p.stat().st_size for p in files["users"]]
    assert 0 in sizes and any(sizes)  # days without a change, and days with one
    texts = {kind: [p.read_text() for p in found] for kind, found in files.items()}
    for found in texts.values():  # one line per record: no blank line, a newline after each
        assert all(t == "" or (t.endswith("\n") and "\n\n" not in t) for t in found)
    lines = {kind: sum(t.count("\n") for t in found) for kind, found in texts.items()}
    assert lines == {"events": summary.event_lines, "users": summary.change_lines}
