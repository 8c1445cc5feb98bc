"""The description written on a registered version: a short model card built from what the
training run recorded (windows, data versions, metrics), plus the intended use."""

from __future__ import annotations

from collections.abc import Mapping

from ml_assets import names

MODEL_DESCRIPTION = (
    "Churn classifier (XGBoost). Predicts the probability that a user active in the last 30 "
    "days has no login and no purchase in the next 30 days. Versions are registered by the "
    "Dagster asset registry/churn_classifier_version and promoted by the gate "
    "registry/churn_classifier_champion (aliases: challenger, champion, previous_champion)."
)

INTENDED_USE = (
    "Intended use: weekly scoring of users active in the last 30 days to target retention "
    "offers; the decision threshold maximizes net value per user on validation. Inputs are "
    "the point-in-time features of main.features.user_activity (at most 2 days old) and "
    "main.features.user_profile. Not for users without activity in the last 90 days, nor for "
    "decisions about individual users without review."
)

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "net_value_per_user")


def version_description(run_id: str, tags: Mapping[str, str], metrics: Mapping[str, float]) -> str:
    windows = ", ".join(
        f"{split} {tags[names.TAG_WINDOW_PREFIX + split]}"
        for split in ("train", "validation", "test")
        if names.TAG_WINDOW_PREFIX + split in tags
    )
    versions = ", ".join(
        f"{key.removeprefix(names.TAG_TABLE_VERSION_PREFIX)} v{value}"
        for key, value in sorted(tags.items())
        if key.startswith(names.TAG_TABLE_VERSION_PREFIX)
    )
    scores = ", ".join(f"{m} {metrics[f'test_{m}']:.4f}" for m in METRICS if f"test_{m}" in metrics)
    return "\n\n".join(
        [
            f"Trained in MLflow run {run_id} by Dagster run "
            f"{tags.get(names.TAG_DAGSTER_RUN_ID, 'unknown')} at git commit "
            f"{tags.get(names.TAG_GIT_COMMIT, 'unknown')}.",
            f"Training window (label_ts): {windows or 'not recorded'}.",
            f"Data: {tags.get(names.TAG_TRAINING_SET, 'training set')} "
            f"v{tags.get(names.TAG_TRAINING_SET_VERSION, '?')} (content hash "
            f"{tags.get(names.TAG_TRAINING_SET_HASH, 'not recorded')}), built from "
            f"{versions or 'unrecorded versions'}.",
            f"Test metrics: {scores or 'none logged'}.",
            INTENDED_USE,
        ]
    )
