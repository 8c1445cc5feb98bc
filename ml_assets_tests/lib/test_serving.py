"""Serving's pure parts: the endpoint config and its routing policy, the online feature
assembly (the training set's lookups on the latest rows) and the skew comparison."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

from ml_assets.lib.features import user_activity, user_profile
from ml_assets.lib.serving.checks import online_matches_offline
from ml_assets.lib.serving.endpoint import Endpoint, plan_endpoint, route_problems
from ml_assets.lib.serving.online import online_frame, plan_publish, rows_as_of
from ml_assets.lib.serving.user_features import user_features

AT = pd.Timestamp("2026-03-10", tz="UTC")
NAME = "main.models.churn_classifier"


def test_the_champion_alone_takes_all_traffic_and_a_challenger_a_canary_share():
    alone = plan_endpoint("churn", NAME, "3")
    assert alone.body() == {
        "name": "churn",
        "config": {
            "served_entities": [
                {
                    "name": "churn_classifier-3",
                    "entity_name": NAME,
                    "entity_version": "3",
                    "workload_size": "Small",
                    "scale_to_zero_enabled": True,
                }
            ],
            "traffic_config": {
                "routes": [{"served_entity_name": "churn_classifier-3", "traffic_percentage": 100}]
            },
        },
    }
    canary = plan_endpoint("churn", NAME, "3", "4", canary_percentage=10)
    assert canary.shares() == {"churn_classifier-3": 90, "churn_classifier-4": 10}
    assert route_problems(canary) == []
    with pytest.raises(ValueError, match="canary_percentage must be between 1 and 99"):
        plan_endpoint("churn", NAME, "3", "4", canary_percentage=100)


def test_a_config_with_unknown_keys_or_bad_routes_is_refused_with_every_problem_named():
    body = plan_endpoint("churn", NAME, "3", "4").model_dump()
    body["config"]["served_entities"][0]["workload_sise"] = "Small"
    with pytest.raises(ValidationError, match="workload_sise\n  Extra inputs are not permitted"):
        Endpoint.model_validate(body)
    body = plan_endpoint("churn", NAME, "3", "4").model_dump()
    body["config"]["traffic_config"]["routes"][0]["traffic_percentage"] = 80
    body["config"]["traffic_config"]["routes"].append(
        {"served_model_name": "churn_classifier-9", "traffic_percentage": 0}
    )
    assert route_problems(Endpoint.model_validate(body)) == [
        "routes name no served entity: ['churn_classifier-9'] (served entities: "
        "['churn_classifier-3', 'churn_classifier-4'])",
        "traffic percentages sum to 90, expected 100 (churn_classifier-3=80, "
        "churn_classifier-4=10, churn_classifier-9=0)",
    ]


def test_a_route_names_its_served_entity_in_exactly_one_field():
    """``served_entity_name`` (what the API expects for served entities); the legacy
    ``served_model_name`` is read too; neither or both is refused."""
    body = plan_endpoint("churn", NAME, "3").body()
    legacy = json.loads(json.dumps(body))
    legacy["config"]["traffic_config"]["routes"] = [
        {"served_model_name": "churn_classifier-3", "traffic_percentage": 100}
    ]
    assert Endpoint.model_validate(legacy).shares() == {"churn_classifier-3": 100}
    for route in (
        {"traffic_percentage": 100},
        {"served_entity_name": "a", "served_model_name": "a", "traffic_percentage": 100},
    ):
        body["config"]["traffic_config"]["routes"] = [route]
        with pytest.raises(ValidationError, match="names its served entity in served_entity"):
            Endpoint.model_validate(body)


def activity(user_id: int, feature_ts: pd.Timestamp, events_7d: int) -> dict:
    row = {f: 1 for f in user_activity.CONTRACT.feature_names}
    return row | {
        "user_id": user_id,
        "feature_ts": feature_ts.to_pydatetime(),
        "events_7d": events_7d,
    }


def test_online_features_use_a_row_only_at_or_before_the_request_and_within_the_lookback():
    rows = [
        activity(1, AT - pd.Timedelta(days=1), 5),  # fresh
        activity(2, AT - pd.Timedelta(days=3), 6),  # older than the 2-day lookback
        activity(3, AT + pd.Timedelta(hours=1), 7),  # after the request time
        activity(4, AT - pd.Timedelta(days=2), 8),  # exactly at the window edge: counts
    ]
    profile = {
        "user_id": 1,
        "feature_ts": (AT - pd.Timedelta(days=40)).to_pydatetime(),
        "plan_tier": "basic",
        "country": "FR",
        "signup_ts": (AT - pd.Timedelta(days=100, hours=5)).to_pydatetime(),
    }
    out = user_features(
        [1, 2, 3, 4, 1, 5],
        AT.to_pydatetime(),
        {
            str(user_activity.CONTRACT.name): {(r["user_id"],): r for r in rows},
            str(user_profile.CONTRACT.name): {(1,): profile},
        },
    ).set_index("user_id")
    events = out["events_7d"]
    assert events.tolist() == [5, 0, 0, 8, 5, 0]  # stale, future and unknown: the default 0
    assert out["days_since_last_login"].isna().tolist() == [False, True, True, False, False, True]
    assert out.loc[4, "user_activity_feature_ts"] == AT - pd.Timedelta(days=2)
    assert out["account_age_days"].iloc[0] == 100  # whole days at the request time
    assert pd.isna(out.loc[5, "plan_tier"]) and pd.isna(out.loc[5, "account_age_days"])


def test_a_publish_plan_sorts_rows_into_new_changed_gone_and_unchanged():
    def frame(values: dict[int, str]) -> pd.DataFrame:
        rows = pd.DataFrame(
            {
                "user_id": list(values),
                "feature_ts": pd.Timestamp("2026-01-01"),
                "plan_tier": list(values.values()),
                "country": "US",
                "signup_ts": pd.Timestamp("2025-01-01"),
            }
        )
        return online_frame(rows, user_profile.CONTRACT)

    plan = plan_publish(
        frame({1: "free", 2: "premium", 4: "basic"}),
        frame({1: "free", 2: "basic", 3: "free"}),
        ["user_id"],
    )
    assert (plan.inserted, plan.updated, plan.unchanged) == (1, 1, 1)
    assert sorted(plan.upserts["user_id"]) == [2, 4]
    assert plan.deletes["user_id"].tolist() == [3]


def test_a_past_day_publishes_each_entitys_newest_row_at_or_before_it():
    day = pd.Timestamp("2026-03-10")
    rows = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 3],
            "feature_ts": [day - pd.Timedelta(days=1), day, day + pd.Timedelta(days=1)]
            + [day - pd.Timedelta(days=5), day - pd.Timedelta(days=2)]
            + [day + pd.Timedelta(hours=1)],
            "plan_tier": ["a", "b", "c", "d", "e", "f"],
        }
    )
    then = rows_as_of(rows, user_profile.CONTRACT, day.to_pydatetime())
    assert dict(zip(then.user_id, then.plan_tier, strict=True)) == {1: "b", 2: "e"}  # 3 is later
    aware = rows_as_of(rows, user_profile.CONTRACT, day.tz_localize("UTC").to_pydatetime())
    assert aware.equals(then)  # a zone-aware time is the same UTC instant
    assert rows_as_of(rows, user_profile.CONTRACT, (day - pd.Timedelta(days=9))).empty


def test_skew_comparison_names_the_first_differences():
    online = pd.DataFrame(
        {
            "user_id": [1, 2],
            "x": [1.0, 2.0],
            "ts": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True),
        }
    )
    offline = pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "x": [1.0, 2.5, 0.0],
            "ts": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"]),
        }
    )
    outcome = online_matches_offline(online, offline, "user_id", ["x", "ts"])
    assert not outcome.passed
    assert (
        outcome.observed["entities_differing"] == 1
        and outcome.observed["entities_missing_online"] == 1
    )
    assert "user_id=2 x: online 2.0, offline 2.5" in outcome.description
    assert online_matches_offline(
        online, offline.iloc[:2].assign(x=[1.0, 2.0]), "user_id", ["x", "ts"]
    ).passed
