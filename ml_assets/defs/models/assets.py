"""``models/churn_classifier``: an Optuna search with one nested MLflow run per trial under
one parent run per materialization; the parent holds the final model, its test metrics,
slice metrics, plots and the lineage of the data it was trained on.

The recipe is ``lib.models.training.train``; the ``training_launcher`` resource decides where it
runs (in this process, a Pipes subprocess, a Databricks job through Pipes). Checks computed from
what the run just recorded (like row conservation in the raw stage): ``metrics_meet_thresholds``
(blocking: a model below the bar is not passed on) and ``trials_recorded`` (the parent run has
as many child runs in MLflow as trials were asked for).
"""

import subprocess

import dagster as dg
from pydantic import Field

from ml_assets import names
from ml_assets.defs.metadata import recorded_lineage
from ml_assets.deployments import REPO_ROOT
from ml_assets.lib.models.training import (
    COLUMNS,
    ORDER,
    TrainingRequest,
    TrainingSettings,
    TrainingSource,
)
from ml_assets.lib.training_sets.churn import TRAINING_SET
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.mlflow import MlflowTracking
from ml_assets.resources.training import TrainingLauncher

TRAINING_SET_KEY = dg.AssetKey(names.CHURN_TRAINING_SET_KEY)
MODEL_KEY = dg.AssetKey(names.CHURN_CLASSIFIER_KEY)


class ChurnClassifierConfig(dg.Config):
    n_trials: int = Field(20, ge=1, le=500, description="Optuna trials (nested MLflow runs)")
    seed: int = Field(7, description="Seeds the TPE sampler and XGBoost")
    min_test_roc_auc: float = Field(0.75, ge=0, le=1)
    max_test_log_loss_vs_base_rate: float = Field(
        1.0, gt=0, description="test log loss at most this times that of predicting the base rate"
    )


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except OSError as exc:
        return f"unknown ({exc})"
    return out.stdout.strip() if out.returncode == 0 else "unknown (not a git checkout)"


def _lineage_tags(context: dg.AssetExecutionContext) -> dict[str, str]:
    tags = {names.TAG_GIT_COMMIT: _git_commit(), names.TAG_DAGSTER_RUN_ID: context.run.run_id}
    lineage = recorded_lineage(context.instance, TRAINING_SET_KEY)
    if lineage is not None:
        tags[names.TAG_TRAINING_SET_HASH] = lineage.content_hash
        for table, table_version in lineage.table_versions.items():
            tags[names.TAG_TABLE_VERSION_PREFIX + table] = str(table_version)
    return tags


@dg.asset(
    key=MODEL_KEY,
    group_name=names.MODELS,
    deps=[TRAINING_SET_KEY],
    kinds={"xgboost", "mlflow"},
    check_specs=[
        dg.AssetCheckSpec(names.CHECK_METRICS_MEET_THRESHOLDS, asset=MODEL_KEY, blocking=True),
        dg.AssetCheckSpec(names.CHECK_TRIALS_RECORDED, asset=MODEL_KEY, blocking=True),
    ],
    description="XGBoost churn classifier: Optuna TPE search (nested MLflow runs), final model "
    "with test and slice metrics, plots, signature and data lineage on the parent run.",
)
def churn_classifier(
    context: dg.AssetExecutionContext,
    config: ChurnClassifierConfig,
    lakehouse: Lakehouse,
    mlflow_tracking: MlflowTracking,
    training_launcher: TrainingLauncher,
):
    version = lakehouse.current_version(TRAINING_SET)
    request = TrainingRequest(
        settings=TrainingSettings(**config.model_dump()),
        source=TrainingSource(lakehouse.table_reference(TRAINING_SET), version),
        run_name=f"churn_classifier {context.run.run_id[:8]}",
        tags=_lineage_tags(context),
    )

    def read():
        frame = lakehouse.read(TRAINING_SET, version=version).select(*COLUMNS).orderBy(*ORDER)
        return frame.toPandas()

    launched = training_launcher.launch(context, request, mlflow_tracking.target(), read)
    for event in launched:
        if isinstance(event, dg.MaterializeResult):
            event = dg.MaterializeResult(
                asset_key=event.asset_key,
                metadata={
                    **(event.metadata or {}),
                    "mlflow_experiment": mlflow_tracking.experiment_name,
                    "mlflow_ui": mlflow_tracking.ui_hint(),
                    "trained": training_launcher.where(),
                },
                data_version=event.data_version,
            )
        yield event
