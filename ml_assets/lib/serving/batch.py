"""Batch inference: a user model's prediction for every eligible user at the data's newest
feature time, from the offline tables through the training set's lookups (the same features
the model was trained on), recorded with the model version and the feature table versions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.features import user_activity
from ml_assets.lib.lakehouse import Column, TableId, TableSpec
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.training_sets.labels import LabelConfig
from ml_assets.lib.training_sets.lookups import TableReader, build_training_set
from ml_assets.lib.training_sets.users import ENTITY_KEY, LABEL_TS, USER_LOOKUPS, with_account_age

SCORED_AT = "scored_at"
# the label's eligibility (LabelConfig.active_within_days) as a user_activity column: events in
# the days [at - N days, at), the window of a row whose feature_ts is ``at``
ACTIVE_WINDOW_EVENTS = f"events_{LabelConfig().active_within_days}d"


def predictions_table(model: ModelDeclaration) -> TableSpec:
    """``<catalog>.serving.<stem>_predictions``: one row per user per scoring time."""
    labels = model.training_set.labels.table
    label = next(c.description for c in labels.columns if c.name == model.label)
    return TableSpec(
        name=TableId.parse(model.predictions_table),
        columns=(
            Column(ENTITY_KEY, "bigint", False, "User scored"),
            Column(SCORED_AT, "timestamp", False, "Feature time the user was scored at"),
            Column(model.output, "double", False, f"P({label})"),
            Column("model_name", "string", False, "Registered model"),
            Column("model_version", "bigint", False, "Version that scored (the champion then)"),
            Column("user_activity_version", "bigint", False, "Delta version of the features"),
            Column("user_profile_version", "bigint", False, "Delta version of the profile read"),
        ),
        primary_key=(ENTITY_KEY, SCORED_AT),
        description=f"{model.name} predictions ({model.output}) of the active users, one row "
        "per user per scoring time; every row names the model version and the feature table "
        "versions that produced it.",
        owner=model.training_set.owner,
    )


def newest_feature_time(activity: DataFrame) -> dt.datetime:
    newest = activity.agg(F.max(user_activity.CONTRACT.timestamp_key)).first()[0]
    if newest is None:
        raise ValueError(f"{user_activity.CONTRACT.name} is empty: there is nobody to score.")
    return newest


def scoring_features(
    tables: TableReader, at: dt.datetime, versions: Mapping[str, int]
) -> DataFrame:
    """The population the model was trained on, at ``at``, with its features."""
    return eligible_features(tables, [at], versions)


def eligible_features(
    tables: TableReader, times: Sequence[dt.datetime], versions: Mapping[str, int]
) -> DataFrame:
    """At each of ``times``, the users the label rule covers: active in the
    ``active_within_days`` before it (the user_activity table also holds users idle for up to
    90 days, whom no label ever covered), with the model's features looked up point-in-time
    at that time (``label_ts``) from the pinned table versions."""
    name = str(user_activity.CONTRACT.name)
    ts = user_activity.CONTRACT.timestamp_key
    spine = (
        tables.read(name, version=versions[name])
        .where(F.col(ts).isin(list(times)))
        .where(F.col(ACTIVE_WINDOW_EVENTS) > 0)
        .select(ENTITY_KEY, F.col(ts).alias(LABEL_TS))
    )
    training = build_training_set(spine, USER_LOOKUPS, label=None, tables=tables, versions=versions)
    return with_account_age(training.df)
