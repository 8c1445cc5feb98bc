"""``features/user_profile``: plan tier, country and signup time from the users SCD history.

One row per version of a user, ``feature_ts`` = the time the change took effect
(``valid_from``), so a point-in-time lookup sees the plan the user had at ``label_ts``.
``status`` is deliberately *not* a feature: accounts are closed after the user has churned,
so the status is the outcome leaking back (DESIGN.md's planted hazard). Account age is
derived at lookup time from ``signup_ts`` (``label_ts - signup_ts``): stored per change it
would be the age at the last change, not at the label time.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.domain import PLAN_TIERS
from ml_assets.lib.features.contracts import Feature, FeatureTableContract
from ml_assets.lib.lakehouse import Column
from ml_assets.names import USER_PROFILE_TABLE

OWNER = "ml-platform"

CONTRACT = FeatureTableContract(
    name=USER_PROFILE_TABLE,
    entity_keys=("user_id",),
    timestamp_key="feature_ts",
    columns=(
        Column("user_id", "bigint", False, "User"),
        Column("feature_ts", "timestamp", False, "When this version of the user took effect"),
    ),
    features=(
        Feature(
            "plan_tier",
            "string",
            "Subscription plan",
            constraint="in {" + ", ".join(repr(t) for t in PLAN_TIERS) + "}",
        ),
        Feature("country", "string", "ISO 3166-1 alpha-2 country code"),
        Feature("signup_ts", "timestamp", "When the user signed up (for the account age)"),
    ),
    owner=OWNER,
    refresh_cadence="on every users change-log load",
    freshness_sla=dt.timedelta(days=2),
    description="User attributes as of each change, from the users SCD history (no status).",
)


def compute_features(
    users_history: DataFrame, start_date: dt.date | None = None, end_date: dt.date | None = None
) -> DataFrame:
    """The versions of the users that took effect from ``start_date`` to ``end_date``
    (inclusive, UTC days; None: unbounded). The asset rebuilds the table whole (no range): the
    history is small and a late change can land anywhere in it."""
    rows = users_history.select(
        "user_id",
        F.col("valid_from").alias("feature_ts"),
        "plan_tier",
        "country",
        "signup_ts",
    )
    day = F.to_date("feature_ts")
    if start_date is not None:
        rows = rows.where(day >= F.lit(start_date))
    if end_date is not None:
        rows = rows.where(day <= F.lit(end_date))
    return rows
