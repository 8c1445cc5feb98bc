"""What the registry says about a model: the registered model's description and tags (owner,
use case), and the description of each version: a short model card built from what the
training run recorded (windows, data versions, metrics, links back to Dagster), plus the
model's declared intended use."""

from __future__ import annotations

from collections.abc import Mapping

from ml_assets import names
from ml_assets.lib.models.declaration import ModelDeclaration


def model_description(model: ModelDeclaration) -> str:
    """The registered model's description: what it predicts and which assets make it."""
    return (
        f"{model.use_case} {model.description} Versions are registered by the Dagster asset "
        f"{'/'.join(model.version_key)} and promoted by the gate {'/'.join(model.champion_key)} "
        "(aliases: challenger, champion, previous_champion)."
    )


def model_tags(model: ModelDeclaration) -> dict[str, str]:
    """The registered model's tags: its owning team, use case and declared name."""
    return {
        names.TAG_OWNER: model.training_set.owner,
        names.TAG_USE_CASE: model.use_case,
        names.TAG_MODEL: model.name,
    }


METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "net_value_per_user")


def version_description(
    model: ModelDeclaration, run_id: str, tags: Mapping[str, str], metrics: Mapping[str, float]
) -> str:
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
            + _link(
                tags.get(names.TAG_DAGSTER_RUN_ID, "unknown"), tags.get(names.TAG_DAGSTER_RUN_URL)
            )
            + f" at git commit {tags.get(names.TAG_GIT_COMMIT, 'unknown')}"
            + (
                f" (asset [{'/'.join(model.model_key)}]({tags[names.TAG_DAGSTER_ASSET_URL]}))."
                if names.TAG_DAGSTER_ASSET_URL in tags
                else "."
            ),
            f"Training window (label_ts): {windows or 'not recorded'}.",
            f"Data: {tags.get(names.TAG_TRAINING_SET, 'training set')} "
            f"v{tags.get(names.TAG_TRAINING_SET_VERSION, '?')} (content hash "
            f"{tags.get(names.TAG_TRAINING_SET_HASH, 'not recorded')}), built from "
            f"{versions or 'unrecorded versions'}.",
            f"Test metrics: {scores or 'none logged'}.",
            model.intended_use,
        ]
    )


def _link(text: str, url: str | None) -> str:
    return f"[{text}]({url})" if url else text
