"""The online store on SQLite and on a real PostgreSQL server: incremental publishing, reads
with UTC timestamps, and the record of the Delta version it holds."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from ml_assets.lib.features import user_profile
from ml_assets.lib.serving.online import online_frame
from ml_assets.resources.online_store import SqlOnlineStore

CONTRACT = user_profile.CONTRACT


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> SqlOnlineStore:
    if request.param == "sqlite":
        return SqlOnlineStore(database_url=f"sqlite:///{tmp_path / 'online.db'}")
    url = request.getfixturevalue("postgres_url")
    store = SqlOnlineStore(database_url=url)
    with store.engine().begin() as conn:  # a clean schema for each test
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return store


def profiles(**changes) -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "feature_ts": pd.to_datetime(
                ["2026-01-01 10:00", "2026-01-02 00:00", "2026-01-03 00:00"]
            ),
            "plan_tier": ["free", "basic", None],
            "country": ["US", "DE", "GB"],
            "signup_ts": pd.to_datetime(["2025-12-01", "2025-12-02", "2025-12-03"]),
        }
    )
    for column, (row, value) in changes.items():
        rows.loc[row, column] = value
    return online_frame(rows, CONTRACT)


def test_publishing_writes_only_what_changed(store):
    first = store.publish(CONTRACT, profiles(), delta_version=4)
    assert (first.inserted, first.updated, first.deleted, first.unchanged) == (3, 0, 0, 0)
    again = store.publish(CONTRACT, profiles(), delta_version=4)
    assert (again.inserted, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 3)
    changed = profiles(plan_tier=(0, "premium")).iloc[[0, 1]]  # user 3 is gone
    changed = pd.concat([changed, profiles(user_id=(2, 9)).iloc[[2]]])  # user 9 is new
    third = store.publish(CONTRACT, changed, delta_version=5)
    assert (third.inserted, third.updated, third.deleted, third.unchanged) == (1, 1, 1, 1)
    stored = store.read(CONTRACT, [1, 2, 3, 9])
    assert sorted(stored) == [(1,), (2,), (9,)]
    assert [stored[(k,)]["plan_tier"] for k in (1, 2, 9)] == ["premium", "basic", None]
    assert stored[(1,)]["feature_ts"] == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    assert store.newest_feature_time(CONTRACT) == dt.datetime(2026, 1, 3, tzinfo=dt.UTC)  # user 9
    assert store.publication(CONTRACT)["delta_version"] == 5
    assert sorted(store.read_keys(CONTRACT)) == [1, 2, 9]


def test_reading_keys_given_as_numpy_integers_finds_them(store):
    store.publish(CONTRACT, profiles(), delta_version=1)
    keys = pd.Series([1, 3]).to_numpy()  # np.int64, as pandas hands them out
    assert sorted(store.read(CONTRACT, keys)) == [(1,), (3,)]


def test_the_store_url_is_shown_without_its_password():
    store = SqlOnlineStore(database_url="postgresql+psycopg://app:secret@db:5432/online")
    assert store.display_url() == "postgresql+psycopg://app:***@db:5432/online"
