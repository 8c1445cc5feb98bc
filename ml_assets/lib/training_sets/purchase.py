"""The purchase-propensity problem, declared: will a user buy in the next 14 days?

Labels: at each weekly observation time ``label_ts`` (Mondays 00:00 UTC), every user active
in the 30 days before it is observed; ``purchased = 1`` when the user makes at least one
purchase in the 14 days from it. The training set looks up the same user features as churn
(``lib/training_sets/users``) and splits by time the same way.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.lib.features import user_daily_activity
from ml_assets.lib.training_sets.declaration import Labels, TrainingSetDeclaration
from ml_assets.lib.training_sets.labels import (
    ACTIVITY_DATE,
    LabelConfig,
    outcome_labels,
    realised_outcomes,
)
from ml_assets.lib.training_sets.users import (
    ACCOUNT_AGE_DERIVED,
    ENTITY_KEY,
    LABEL_TS,
    USER_LOOKUPS,
    USER_MODEL_FEATURES,
    user_labels_table,
)

LABEL = "purchased"
OUTCOME_DAYS = 14
LABELS_TABLE = f"{names.CATALOG}.{names.TRAINING_SETS}.purchase_labels"
TRAINING_SET_TABLE = f"{names.CATALOG}.{names.TRAINING_SETS}.purchase_training_set"
CONFIG = LabelConfig(outcome_days=OUTCOME_DAYS, active_within_days=30)


def compute_purchase_labels(
    daily: DataFrame,
    first_day: dt.date,
    last_day: dt.date,
    config: LabelConfig = CONFIG,
    *,
    history_days: int = 0,
) -> DataFrame:
    """Labels from ``user_daily_activity`` covering ``first_day..last_day`` (inclusive), at
    observation times with ``history_days`` of data before them."""
    return outcome_labels(
        daily,
        first_day,
        last_day,
        config,
        entity_key=ENTITY_KEY,
        timestamp=LABEL_TS,
        label=LABEL,
        outcome=F.col("purchases") > 0,
        positive_when=True,
        history_days=history_days,
    )


def realised_purchases(daily: DataFrame, scored: DataFrame, last_day: dt.date) -> DataFrame:
    """The purchase label each scored (user_id, scored time) earned, once its 14 days passed."""
    return realised_outcomes(
        daily,
        scored,
        last_day,
        CONFIG,
        entity_key=ENTITY_KEY,
        timestamp=LABEL_TS,
        label=LABEL,
        outcome=F.col("purchases") > 0,
        positive_when=True,
    )


PURCHASE = TrainingSetDeclaration(
    table_name=TRAINING_SET_TABLE,
    labels=Labels(
        table=user_labels_table(
            LABELS_TABLE,
            LABEL,
            f"a purchase in the {OUTCOME_DAYS} days from label_ts",
            "Purchase labels: users active before each weekly observation time, and whether "
            f"they bought in the {OUTCOME_DAYS} days after it.",
        ),
        label=LABEL,
        compute=compute_purchase_labels,
        source=user_daily_activity.CONTRACT.table_spec,
        source_date=ACTIVITY_DATE,
        rate_name="purchase rate",
        realise=realised_purchases,
    ),
    lookups=USER_LOOKUPS,
    derived=(ACCOUNT_AGE_DERIVED,),
    model_features=USER_MODEL_FEATURES,
    description=(
        "Purchase labels joined point-in-time with user_activity (lookback 2 days) and "
        "user_profile, with a time-based split. Lineage (Delta versions) in the metadata."
    ),
)
