"""The churn problem, declared: labels at weekly observation times and the training set.

Labels: at each observation time ``label_ts`` (Mondays 00:00 UTC), every user *active* in the
30 days before it is observed; ``churned = 1`` when the user has neither a login nor a
purchase in the 30 days after it (``lib/training_sets/labels``).

The training set looks up ``user_activity`` (lookback 2 days: the table is refreshed daily,
a missing day is tolerated once) and ``user_profile`` (no lookback: the attributes hold until
the next change), carries the matched feature timestamp of each lookup, derives the account
age at ``label_ts`` and assigns a time-based split.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.features import user_daily_activity
from ml_assets.lib.training_sets.declaration import (
    SPLIT,
    SPLITS,
    Labels,
    Lineage,
    SplitCutoffs,
    TrainingSetDeclaration,
    default_cutoffs,
)
from ml_assets.lib.training_sets.labels import (
    ACTIVITY_DATE,
    LabelConfig,
    outcome_labels,
    realised_outcomes,
)
from ml_assets.lib.training_sets.lookups import TableReader, TrainingSet
from ml_assets.lib.training_sets.users import (
    ACCOUNT_AGE,
    ACCOUNT_AGE_DERIVED,
    ENTITY_KEY,
    LABEL_TS,
    USER_LOOKUPS,
    USER_MODEL_FEATURES,
    user_labels_table,
    with_account_age,
)
from ml_assets.names import CHURN_LABELS_TABLE, CHURN_TRAINING_SET_TABLE

OWNER = "ml-platform"
LABEL = "churned"


def _engaged():
    """A day with a login or a purchase: churn is 30 days without one."""
    return (F.col("logins") > 0) | (F.col("purchases") > 0)


def compute_churn_labels(
    daily: DataFrame,
    first_day: dt.date,
    last_day: dt.date,
    config: LabelConfig | None = None,
    *,
    history_days: int = 0,
) -> DataFrame:
    """Labels from ``user_daily_activity`` covering ``first_day..last_day`` (inclusive), at
    observation times with ``history_days`` of data before them."""
    return outcome_labels(
        daily,
        first_day,
        last_day,
        config or LabelConfig(),
        entity_key=ENTITY_KEY,
        timestamp=LABEL_TS,
        label=LABEL,
        outcome=_engaged(),
        positive_when=False,
        history_days=history_days,
    )


def realised_churn(
    daily: DataFrame, scored: DataFrame, last_day: dt.date, config: LabelConfig | None = None
) -> DataFrame:
    """The churn label each scored (user_id, scored time) earned, once its 30 days passed."""
    return realised_outcomes(
        daily,
        scored,
        last_day,
        config or LabelConfig(),
        entity_key=ENTITY_KEY,
        timestamp=LABEL_TS,
        label=LABEL,
        outcome=_engaged(),
        positive_when=False,
    )


LABELS_DECLARATION = Labels(
    table=user_labels_table(
        CHURN_LABELS_TABLE,
        LABEL,
        "no login and no purchase in the 30 days after label_ts",
        "Churn labels: users active before each weekly observation time, and the outcome.",
        owner=OWNER,
    ),
    label=LABEL,
    compute=compute_churn_labels,
    source=user_daily_activity.CONTRACT.table_spec,
    source_date=ACTIVITY_DATE,
    rate_name="churn rate",
    realise=realised_churn,
)

CHURN = TrainingSetDeclaration(
    table_name=CHURN_TRAINING_SET_TABLE,
    labels=LABELS_DECLARATION,
    lookups=USER_LOOKUPS,
    derived=(ACCOUNT_AGE_DERIVED,),
    model_features=USER_MODEL_FEATURES,
    description=(
        "Churn labels joined point-in-time with user_activity (lookback 2 days) and "
        "user_profile, with a time-based split. Lineage (Delta versions) in the metadata."
    ),
    owner=OWNER,
)

# The names the stages after training read (serving, monitoring), and the tests.
LABELS = CHURN.labels.table
TRAINING_SET = CHURN.table
CHURN_LOOKUPS = CHURN.lookups
MODEL_FEATURES = CHURN.model_features
LOOKBACKS = CHURN.lookbacks


def build_churn_training_set(
    tables: TableReader,
    *,
    cutoffs: SplitCutoffs | None = None,
    versions=None,
) -> tuple[TrainingSet, SplitCutoffs]:
    return CHURN.build(tables, cutoffs=cutoffs, versions=versions)


def rebuild_churn_training_set(tables: TableReader, lineage: Lineage) -> tuple[DataFrame, str]:
    return CHURN.rebuild(tables, lineage)


__all__ = [
    "ACCOUNT_AGE",
    "CHURN",
    "CHURN_LOOKUPS",
    "ENTITY_KEY",
    "LABEL",
    "LABELS",
    "LABEL_TS",
    "LOOKBACKS",
    "MODEL_FEATURES",
    "SPLIT",
    "SPLITS",
    "TRAINING_SET",
    "LabelConfig",
    "Lineage",
    "SplitCutoffs",
    "build_churn_training_set",
    "compute_churn_labels",
    "realised_churn",
    "default_cutoffs",
    "rebuild_churn_training_set",
    "with_account_age",
]
