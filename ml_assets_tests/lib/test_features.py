"""Feature computations on hand-built and random data, against naive Python."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from ml_assets.lib.features import user_activity, user_daily_activity, user_profile

D0 = dt.date(2026, 3, 1)
EVENTS = (
    "event_id string, user_id bigint, event_type string, event_ts timestamp, "
    "event_date date, session_id string, revenue double"
)


def ts(day: dt.date, hour: float) -> dt.datetime:
    return dt.datetime.combine(day, dt.time()) + dt.timedelta(hours=hour)


def test_daily_activity_counts_by_type_sessions_and_revenue_per_user_day(spark):
    d1 = D0 + dt.timedelta(days=1)
    rows = [
        ("e1", 1, "login", ts(D0, 1), D0, "s1", None),
        ("e2", 1, "purchase", ts(D0, 1.1), D0, "s1", 30.0),
        ("e3", 1, "login", ts(D0, 20), D0, "s2", None),
        ("e4", 1, "purchase", ts(D0, 20.5), D0, "s2", 12.5),
        ("e5", 2, "page_view", ts(D0, 3), D0, None, None),
        ("e6", 1, "add_to_cart", ts(d1, 0), d1, "s3", None),  # the next day: not in range
    ]
    out = user_daily_activity.compute_features(spark.createDataFrame(rows, EVENTS), D0, D0)
    got = {r.user_id: r.asDict() for r in out.collect()}
    assert set(got) == {1, 2}
    assert {k: got[1][k] for k in ("logins", "purchases", "events", "sessions", "revenue")} == {
        "logins": 2,
        "purchases": 2,
        "events": 4,
        "sessions": 2,
        "revenue": 42.5,
    }
    assert got[2]["page_views"] == 1 and got[2]["revenue"] == 0.0 and got[2]["sessions"] == 0
    assert got[1]["feature_ts"] == dt.datetime(2026, 3, 2)  # end of the day, exclusive bound
    assert sorted(out.columns) == sorted(user_daily_activity.CONTRACT.table_spec.column_names)


@pytest.mark.parametrize("seed", [1, 2])
def test_daily_activity_equals_a_naive_scan_of_the_events(spark, seed):
    """Many events per session, sessions spanning two days, null sessions and revenues: the
    two aggregations give what one count of distinct sessions per user and day gives."""
    rng = random.Random(seed)
    types = [*user_daily_activity.COUNTED_EVENTS, "search"]
    rows = []
    for i in range(600):
        day = D0 + dt.timedelta(days=rng.randint(0, 3))
        kind = rng.choice(types)
        revenue = (
            round(rng.uniform(0.01, 90), 2) if kind == "purchase" and rng.random() < 0.9 else None
        )
        session = None if rng.random() < 0.1 else f"s{rng.randint(0, 40)}"
        rows.append(
            (f"e{i}", rng.randint(1, 5), kind, ts(day, rng.uniform(0, 23)), day, session, revenue)
        )
    start, end = D0 + dt.timedelta(days=1), D0 + dt.timedelta(days=2)
    out = user_daily_activity.compute_features(spark.createDataFrame(rows, EVENTS), start, end)
    got = {(r.user_id, r.activity_date): r.asDict() for r in out.collect()}
    expected = {}
    for key in {(r[1], r[4]) for r in rows if start <= r[4] <= end}:
        mine = [r for r in rows if (r[1], r[4]) == key]
        counts = {
            name: sum(r[2] == kind for r in mine)
            for kind, name in user_daily_activity.COUNTED_EVENTS.items()
        }
        expected[key] = {
            **counts,
            "events": len(mine),
            "sessions": len({r[5] for r in mine if r[5] is not None}),
            "revenue": sum(r[6] for r in mine if r[6] is not None),
        }
    assert set(got) == set(expected)
    for key, row in expected.items():
        for name, value in row.items():
            assert got[key][name] == pytest.approx(value), (key, name)


DAILY = (
    "user_id bigint, activity_date date, feature_ts timestamp, logins bigint, page_views bigint, "
    "add_to_carts bigint, purchases bigint, events bigint, sessions bigint, revenue double"
)


def random_daily(seed: int, users: int = 6, days: int = 200) -> list[tuple]:
    rng = random.Random(seed)
    rows = []
    for user in range(users):
        rate = rng.choice([0.02, 0.1, 0.4])
        for i in range(days):
            if rng.random() < rate:
                day = D0 + dt.timedelta(days=i - days // 2)
                logins, purchases = rng.randint(0, 2), rng.randint(0, 1)
                events = logins + purchases + rng.randint(0, 5)
                rows.append(
                    (
                        user,
                        day,
                        ts(day, 24),
                        logins,
                        0,
                        0,
                        purchases,
                        events,
                        rng.randint(0, 3),
                        round(purchases * rng.uniform(5, 80), 2),
                    )
                )
    return rows


def naive_activity(daily: list[tuple], day: dt.date) -> dict[int, dict]:
    """Rolling features of ``day`` by scanning every daily row."""
    out: dict[int, dict] = {}
    for user in sorted({r[0] for r in daily}):
        mine = [r for r in daily if r[0] == user and 0 <= (day - r[1]).days <= 89]
        if not mine:
            continue
        row: dict[str, object] = {}
        for name, index in (
            ("events", 7),
            ("logins", 3),
            ("purchases", 6),
            ("sessions", 8),
            ("revenue", 9),
        ):
            for w in (7, 30, 90):
                row[f"{name}_{w}d"] = sum(r[index] for r in mine if (day - r[1]).days < w)
        logins = [(day - r[1]).days for r in mine if r[3] > 0]
        purchases = [(day - r[1]).days for r in mine if r[6] > 0]
        row["days_since_last_login"] = min(logins) if logins else None
        row["days_since_last_purchase"] = min(purchases) if purchases else None
        prev = sum(r[7] for r in mine if 30 <= (day - r[1]).days <= 59)
        row["events_30d_mom_change"] = (row["events_30d"] - prev) / prev if prev else None
        out[user] = row
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_rolling_activity_equals_a_naive_scan_of_the_daily_rows(spark, seed):
    daily = random_daily(seed)
    start, end = D0 - dt.timedelta(days=3), D0 + dt.timedelta(days=4)
    out = user_activity.compute_features(spark.createDataFrame(daily, DAILY), start, end)
    assert sorted(out.columns) == sorted(user_activity.CONTRACT.table_spec.column_names)
    got = {(r.user_id, r.feature_date): r.asDict() for r in out.collect()}
    expected = {}
    for i in range((end - start).days + 1):
        day = start + dt.timedelta(days=i)
        for user, row in naive_activity(daily, day).items():
            expected[(user, day)] = row
    assert set(got) == set(expected)  # one row per user active in the 90 days, per day
    for key, row in expected.items():
        for name, value in row.items():
            assert got[key][name] == pytest.approx(value), (key, name)
        assert got[key]["feature_ts"] == ts(key[1], 24)


def test_window_edges_are_exact_and_nothing_after_the_day_is_used(spark):
    def daily_row(days_before: int, events: int) -> tuple:
        day = D0 - dt.timedelta(days=days_before)
        return (1, day, ts(day, 24), 1, 0, 0, 0, events, 1, 0.0)

    rows = [
        daily_row(6, 1),
        daily_row(7, 10),
        daily_row(89, 100),
        daily_row(90, 1000),
        daily_row(-1, 10_000),
    ]  # the last is the day after D0
    (row,) = user_activity.compute_features(spark.createDataFrame(rows, DAILY), D0, D0).collect()
    assert (row.events_7d, row.events_30d, row.events_90d) == (1, 11, 111)
    assert row.days_since_last_login == 6
    assert row.days_since_last_purchase is None


def test_computing_days_one_at_a_time_equals_one_backfill(spark):
    daily = spark.createDataFrame(random_daily(3), DAILY)
    start = D0 - dt.timedelta(days=2)
    whole = user_activity.compute_features(daily, start, D0)
    pieces = None
    for i in range(3):
        day = start + dt.timedelta(days=i)
        one = user_activity.compute_features(daily, day, day)
        pieces = one if pieces is None else pieces.unionByName(one)
    assert sorted(map(tuple, whole.collect())) == sorted(map(tuple, pieces.collect()))


def test_profile_takes_every_version_at_its_change_time_and_never_the_status(spark):
    history = spark.createDataFrame(
        [
            (1, ts(D0, 0), "free", "DE", "active", ts(D0, 0)),
            (1, ts(D0, 50), "premium", "DE", "active", ts(D0, 0)),
            (1, ts(D0, 90), "premium", "DE", "closed", ts(D0, 0)),
        ],
        "user_id bigint, valid_from timestamp, plan_tier string, country string, status string, "
        "signup_ts timestamp",
    )
    out = user_profile.compute_features(history)
    assert "status" not in out.columns
    assert [(r.feature_ts, r.plan_tier) for r in out.orderBy("feature_ts").collect()] == [
        (ts(D0, 0), "free"),
        (ts(D0, 50), "premium"),
        (ts(D0, 90), "premium"),
    ]
    # the same signature as every feature module: a range of feature days, here the middle one
    middle = ts(D0, 50).date()  # D0 + 2 days
    ranged = user_profile.compute_features(history, middle, middle).collect()
    assert [r.feature_ts for r in ranged] == [ts(D0, 50)]
