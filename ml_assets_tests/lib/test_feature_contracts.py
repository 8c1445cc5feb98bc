"""Feature table contracts: what one spec derives, and malformed specs refused at load."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from ml_assets.lib.features import user_activity, user_daily_activity, user_profile
from ml_assets.lib.features.contracts import (
    ContractError,
    Feature,
    FeatureTableContract,
    constraint_sql,
)
from ml_assets.lib.features.registry import CONTRACTS, contract_for
from ml_assets.lib.lakehouse import Column


def contract(**changes) -> FeatureTableContract:
    fields = dict(
        name="main.features.example",
        entity_keys=("user_id",),
        timestamp_key="feature_ts",
        columns=(Column("user_id", "bigint"), Column("feature_ts", "timestamp")),
        features=(
            Feature("clicks_7d", "bigint", "Clicks", window="7d", default=0, constraint=">= 0"),
            Feature(
                "ctr",
                "double",
                "Click rate",
                null_policy="nullable",
                max_null_rate=0.2,
                constraint="in [0, 1]",
            ),
            Feature("tier", "string", "Plan", constraint="in {'free', 'paid'}"),
        ),
        owner="ml-platform",
        refresh_cadence="daily",
        freshness_sla=dt.timedelta(days=1),
        description="An example.",
    )
    return FeatureTableContract(**(fields | changes))


def test_one_contract_gives_the_schema_constraints_ceilings_defaults_and_description():
    c = contract()
    spec = c.table_spec
    assert str(spec.name) == "main.features.example"
    assert spec.primary_key == ("user_id", "feature_ts")
    assert [(col.name, col.dtype, col.nullable) for col in spec.columns] == [
        ("user_id", "bigint", False),
        ("feature_ts", "timestamp", False),
        ("clicks_7d", "bigint", False),
        ("ctr", "double", True),
        ("tier", "string", False),
    ]
    assert c.constraints == {
        "clicks_7d_constraint": "clicks_7d >= 0",
        "ctr_constraint": "ctr BETWEEN 0 AND 1",
        "tier_constraint": "tier IN ('free', 'paid')",
    }
    assert c.null_rate_ceilings == {"clicks_7d": 0.0, "ctr": 0.2, "tier": 0.0}
    assert c.default_values == {"clicks_7d": 0}
    assert "| `ctr` | double |  | nullable (≤ 20%) |" in c.markdown()
    assert spec.owner == "ml-platform" and "window 7d" in spec.column_index["clicks_7d"].description


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"features": (Feature("x", "float64", "X"),)}, "feature 'x' has unknown dtype 'float64'"),
        (
            {"features": (Feature("x", "bigint", "X"), Feature("x", "double", "X again"))},
            "duplicate feature name 'x'",
        ),
        ({"entity_keys": ("account_id",)}, "key 'account_id' is not in the schema"),
        ({"timestamp_key": "ts"}, "key 'ts' is not in the schema"),
        (
            {"columns": (Column("user_id", "bigint"), Column("feature_ts", "date"))},
            "timestamp key 'feature_ts' is a date, expected timestamp",
        ),
        ({"features": (Feature("x", "bigint", "X", constraint="> zero"),)}, "is not understood"),
        (
            {"features": (Feature("x", "string", "X", constraint=">= 0"),)},
            "compares numbers, but the feature is a string",
        ),
        (
            {"features": (Feature("x", "bigint", "X", default="none"),)},
            "default 'none', which is not a bigint value",
        ),
        (
            {"features": (Feature("x", "bigint", "X", max_null_rate=0.5),)},
            "is not_null but sets max_null_rate=0.5",
        ),
        ({"features": (Feature("x", "bigint", "X", window="a week"),)}, "expected days"),
        ({"features": (Feature("x", "bigint", "X", window="7d\n"),)}, "expected days"),
        ({"name": "features.example"}, "expected three dot-separated parts"),
        ({"freshness_sla": dt.timedelta(0)}, "freshness_sla must be positive"),
        (
            {"features": (Feature("user_id", "bigint", "Again"),)},
            "feature 'user_id' has the name of an identity column",
        ),
    ],
)
def test_a_malformed_contract_fails_when_it_is_declared_naming_the_problem(changes, message):
    with pytest.raises(ContractError, match=re.escape(message)):
        contract(**changes)


def test_every_problem_of_a_contract_is_listed_in_one_error():
    with pytest.raises(ContractError) as raised:
        contract(
            entity_keys=("account_id",),
            features=(Feature("x", "decimal", "X"), Feature("x", "bigint", "")),
        )
    text = str(raised.value)
    assert "4 problem(s)" in text
    for part in ("account_id", "unknown dtype 'decimal'", "duplicate feature name", "description"):
        assert part in text


def test_constraint_forms_become_sql():
    assert constraint_sql("a", "double", "< 2.5") == "a < 2.5"
    assert constraint_sql("a", "bigint", "in [-1, 1]") == "a BETWEEN -1 AND 1"
    assert constraint_sql("a", "bigint", "in {3, 1}") == "a IN (1, 3)"
    with pytest.raises(ContractError, match="empty interval"):
        constraint_sql("a", "double", "in [1, 0]")
    with pytest.raises(ContractError, match="may not contain quotes"):
        constraint_sql("a", "string", 'in {"it\'s"}')


def test_the_projects_contracts_are_registered_and_status_is_not_a_feature():
    assert set(CONTRACTS) == {
        "main.features.user_daily_activity",
        "main.features.user_activity",
        "main.features.user_profile",
    }
    assert contract_for("MAIN.features.user_profile") is user_profile.CONTRACT
    assert "status" not in user_profile.CONTRACT.table_spec.column_names
    assert user_activity.CONTRACT.partition_by == ("feature_date",)
    assert user_daily_activity.CONTRACT.primary_key == ("user_id", "feature_ts")
    with pytest.raises(KeyError, match="known feature tables"):
        contract_for("main.features.nope")
