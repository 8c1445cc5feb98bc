"""Batch inference: a user model's prediction for every eligible user at the data's newest
feature time, from the offline tables through the training set's lookups (the same features
the model was trained on), recorded with the model version and the feature table versions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.lib.features import user_activity, user_profile
from ml_assets.lib.lakehouse import Column, TableId, TableSpec
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.quality import CheckOutcome
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


def held_out_from(run_tags: Mapping[str, str]) -> dt.date | None:
    """The first observation day of the test split a version was trained with (its run's
    ``ml_assets.window.test`` tag, ``"YYYY-MM-DD..YYYY-MM-DD"``); None when not recorded."""
    window = run_tags.get(names.TAG_WINDOW_PREFIX + "test")
    if not window:
        return None
    try:
        return dt.date.fromisoformat(window.split("..")[0])
    except ValueError:
        return None


def scoring_times(
    feature_times: Sequence[dt.datetime],
    since: dt.date | None,
    scored_by_version: Sequence[dt.datetime] = (),
) -> list[dt.datetime]:
    """The feature times a batch scores: every one from ``since`` (the champion's test window
    start: days it never trained on, whose outcomes mature one by one) to the newest, less the
    ones this version already scored; the newest is always (re)scored, as its features may have
    been restated. Without ``since`` only the newest."""
    if not feature_times:
        return []
    newest = max(feature_times)
    done = set(scored_by_version)
    times = {t for t in feature_times if since is not None and t.date() >= since and t not in done}
    return sorted(times | {newest})


def scoring_features(
    tables: TableReader, at: dt.datetime, versions: Mapping[str, int]
) -> DataFrame:
    """The population the model was trained on, at ``at``, with its features."""
    return eligible_features(tables, [at], versions)


def feature_versions(tables: TableReader) -> dict[str, int | None]:
    """The current version of each table ``eligible_features`` reads, by table name: pinned
    once, so that every time of a pass reads the same data (and the pass can record it)."""
    specs = (user_activity.CONTRACT.table_spec, user_profile.CONTRACT.table_spec)
    return {str(spec.name): tables.version(spec) for spec in specs}


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


def newest_batch_valid(tables: TableReader, model: ModelDeclaration) -> CheckOutcome:
    """The newest scoring batch: a probability in [0, 1] for every row, one row per user
    eligible at its scoring time (recounted from the feature version it names), and one model
    version named on every row."""
    spec = predictions_table(model)
    name = str(spec.name)
    if tables.version(name) is None:
        return CheckOutcome(False, f"{name} does not exist: nothing was scored yet.", {})
    rows = tables.read(name)
    at = rows.agg(F.max(SCORED_AT)).first()[0]
    if at is None:
        return CheckOutcome(False, f"{name} is empty: nothing was scored yet.", {})
    output = F.col(model.output)
    stats = (
        rows.where(F.col(SCORED_AT) == F.lit(at))
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.countDistinct(ENTITY_KEY).alias("users"),
            F.sum(
                (output.isNull() | F.isnan(output) | (output < 0) | (output > 1)).cast("long")
            ).alias("not_probabilities"),
            F.sum(
                (F.col("model_name").isNull() | F.col("model_version").isNull()).cast("long")
            ).alias("without_model"),
            F.countDistinct("model_name", "model_version").alias("models"),
            F.min("user_activity_version").alias("activity_version"),
            F.max("user_activity_version").alias("activity_version_max"),
        )
        .first()
    )
    activity = str(user_activity.CONTRACT.name)
    eligible = (
        tables.read(activity, version=stats["activity_version"])
        .where(F.col(user_activity.CONTRACT.timestamp_key) == F.lit(at))
        .where(F.col(ACTIVE_WINDOW_EVENTS) > 0)
        .select(ENTITY_KEY)
        .distinct()
        .count()
    )
    problems = []
    if stats["not_probabilities"]:
        problems.append(f"{stats['not_probabilities']} score(s) null, NaN or outside [0, 1]")
    if stats["rows"] != stats["users"]:
        problems.append(f"{stats['rows'] - stats['users']} user(s) scored more than once")
    if stats["users"] != eligible:
        problems.append(
            f"{stats['users']} users scored, {eligible} eligible at {at} (users active in the "
            f"{LabelConfig().active_within_days} days before it, {activity} "
            f"v{stats['activity_version']})"
        )
    if stats["without_model"] or stats["models"] != 1:
        problems.append(
            f"{stats['without_model']} row(s) without a model version; "
            f"{stats['models']} distinct model versions in one batch (expected 1)"
        )
    if stats["activity_version"] != stats["activity_version_max"]:
        problems.append("the batch names more than one user_activity version")
    observed = {
        "scored_at": str(at),
        "rows": stats["rows"],
        "eligible_users": eligible,
        "not_probabilities": stats["not_probabilities"] or 0,
        "rows_without_model_version": stats["without_model"] or 0,
        "model_versions_in_batch": stats["models"],
    }
    if problems:
        return CheckOutcome(False, f"Batch at {at}: " + "; ".join(problems), observed)
    return CheckOutcome(
        True,
        f"Batch at {at}: {stats['rows']} probabilities in [0, 1], one per eligible user, one "
        "model version",
        observed,
    )
