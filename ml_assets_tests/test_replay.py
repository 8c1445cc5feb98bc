"""The replay's choice of days and its split of the traffic over them."""

from __future__ import annotations

import pandas as pd
import pytest

from ml_assets.programs.replay import Replayed, replay_days, split


def test_replayed_days_are_evenly_spaced_and_keep_the_first_and_the_newest():
    days = list(pd.date_range("2026-03-01", periods=20, freq="D", tz="UTC"))
    picked = replay_days(list(reversed(days)) + days[:3], at_most=4)  # unsorted, repeated
    assert picked == [days[0], days[6], days[13], days[19]]
    assert replay_days(days[:3], at_most=4) == days[:3]
    assert replay_days(days, at_most=1) == [days[-1]]
    with pytest.raises(ValueError, match="at least 1"):
        replay_days(days, at_most=0)


def test_the_traffic_is_split_over_the_days_to_the_last_request():
    assert split(200, 4) == [50, 50, 50, 50]
    assert split(10, 3) == [4, 3, 3] and sum(split(3_000, 7)) == 3_000


def test_replays_add_up_day_by_day():
    first = Replayed(2, {200: 2}, {"a": 2}, 1.0, ("2026-03-01",))
    second = Replayed(3, {200: 2, 400: 1}, {"a": 1, "b": 1}, 0.5, ("2026-03-02",))
    both = Replayed(0, {}, {}, 0.0) + first + second
    assert (both.requests, both.by_status, both.by_served_entity) == (
        5,
        {200: 4, 400: 1},
        {"a": 3, "b": 1},
    )
    assert both.describe().startswith("5 requests over 2 days 2026-03-01..2026-03-02 in 1.5 s")
