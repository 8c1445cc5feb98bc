"""What every model over users at weekly observation times shares: the entity key and the
observation time, the point-in-time lookups of ``user_activity`` (lookback 2 days: the table is
refreshed daily, a missing day is tolerated once) and ``user_profile`` (no lookback: the
attributes hold until the next change), the account age derived at the observation time, and
the model features drawn from them.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.features import user_activity, user_profile
from ml_assets.lib.lakehouse import Column, TableId, TableSpec
from ml_assets.lib.training_sets.declaration import DEFAULT_OWNER, Derived
from ml_assets.lib.training_sets.lookups import FeatureLookup

ENTITY_KEY = "user_id"
LABEL_TS = "label_ts"
ACTIVITY_MATCHED_TS = "user_activity_feature_ts"
PROFILE_MATCHED_TS = "user_profile_feature_ts"
ACCOUNT_AGE = "account_age_days"
ACTIVITY_LOOKBACK = dt.timedelta(days=2)


def with_account_age(df: DataFrame) -> DataFrame:
    """``account_age_days``: whole days from ``signup_ts`` to ``label_ts`` (null without a
    signup time). The online features compute the same at the request time."""
    age = F.floor(
        (F.col(LABEL_TS).cast("double") - F.col("signup_ts").cast("double")) / 86_400
    ).cast("long")
    return df.withColumn(ACCOUNT_AGE, age)


# Shared by every model over users at weekly observation times (see lib/training_sets/purchase)
USER_LOOKUPS: tuple[FeatureLookup, ...] = (
    FeatureLookup(
        table_name=user_activity.CONTRACT.name,
        lookup_key=ENTITY_KEY,
        timestamp_lookup_key=LABEL_TS,
        lookback_window=ACTIVITY_LOOKBACK,
        matched_timestamp_column=ACTIVITY_MATCHED_TS,
    ),
    FeatureLookup(
        table_name=user_profile.CONTRACT.name,
        lookup_key=ENTITY_KEY,
        timestamp_lookup_key=LABEL_TS,
        matched_timestamp_column=PROFILE_MATCHED_TS,
    ),
)
ACCOUNT_AGE_DERIVED = Derived(
    Column(ACCOUNT_AGE, "bigint", True, "Whole days from signup_ts to label_ts"), with_account_age
)
# the looked-up features except the raw signup time, plus the age
USER_MODEL_FEATURES: tuple[str, ...] = (
    *user_activity.CONTRACT.feature_names,
    "plan_tier",
    "country",
    ACCOUNT_AGE,
)


def user_labels_table(
    table_name: str, label: str, meaning: str, description: str, owner: str = DEFAULT_OWNER
) -> TableSpec:
    """The table of a user label at weekly observation times: (user_id, label_ts, label), the
    label's column described by ``meaning`` (what 1 means)."""
    return TableSpec(
        name=TableId.parse(table_name),
        columns=(
            Column(ENTITY_KEY, "bigint", False, "User observed"),
            Column(LABEL_TS, "timestamp", False, "Observation time (Monday 00:00 UTC)"),
            Column(label, "int", False, f"1: {meaning}"),
        ),
        primary_key=(ENTITY_KEY, LABEL_TS),
        description=description,
        owner=owner,
    )
