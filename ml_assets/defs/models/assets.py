"""``models/<name>`` for every declared model (lib/models/catalog): an Optuna search with one
nested MLflow run per trial under one parent run per materialization; the parent holds the
final model, its test metrics, slice metrics, plots and the lineage of the data it was trained
on.

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
from ml_assets.defs.metadata import recorded_lineage, table_key
from ml_assets.deployments import REPO_ROOT
from ml_assets.lib.links import DagsterLinks
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.models.training import TrainingRequest, TrainingSettings, TrainingSource
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.links import UiLinks
from ml_assets.resources.mlflow import MlflowTracking
from ml_assets.resources.training import TrainingLauncher


def training_config(model: ModelDeclaration) -> type[dg.Config]:
    """The launchpad's settings for one model, its declared defaults shown."""
    d = model.settings

    class ModelTrainingConfig(dg.Config):
        n_trials: int = Field(d.n_trials, ge=1, le=500, description="Optuna trials (nested runs)")
        seed: int = Field(d.seed, description="Seeds the TPE sampler and XGBoost")
        min_test_roc_auc: float = Field(
            d.min_test_roc_auc, ge=0, le=1, description="the lowest test ROC AUC passed on"
        )
        max_test_log_loss_vs_base_rate: float = Field(
            d.max_test_log_loss_vs_base_rate,
            gt=0,
            description="test log loss at most this times that of predicting the base rate",
        )
        ablated_features: list[str] = Field(
            list(d.ablated_features),
            description="numeric features set to 0 in every split before training (an "
            "ablation: what the model is worth without them); recorded on the run",
        )

    ModelTrainingConfig.__name__ = f"{model.name}_training_config"
    return ModelTrainingConfig


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except OSError as exc:
        return f"unknown ({exc})"
    return out.stdout.strip() if out.returncode == 0 else "unknown (not a git checkout)"


def _lineage_tags(
    context: dg.AssetExecutionContext, training_set: dg.AssetKey, links: DagsterLinks
) -> dict[str, str]:
    tags = {
        names.TAG_GIT_COMMIT: _git_commit(),
        names.TAG_DAGSTER_RUN_ID: context.run.run_id,
        names.TAG_DAGSTER_RUN_URL: links.run(context.run.run_id),
        names.TAG_DAGSTER_ASSET_URL: links.asset(context.assets_def.key.path),
    }
    lineage = recorded_lineage(context.instance, training_set)
    if lineage is not None:
        tags[names.TAG_TRAINING_SET_HASH] = lineage.content_hash
        for table, table_version in lineage.table_versions.items():
            tags[names.TAG_TABLE_VERSION_PREFIX + table] = str(table_version)
    return tags


def _with_links(event, mlflow_tracking: MlflowTracking, ui_links: UiLinks, where: str):
    """The run's entries as links into the MLflow UI (its experiment, run and logged model)."""
    if not isinstance(event, dg.MaterializeResult):
        return event
    metadata = {
        **(event.metadata or {}),
        "mlflow_experiment": mlflow_tracking.experiment_name,
        "trained": where,
    }
    links = ui_links.mlflow()
    if links is not None:
        experiment_id = mlflow_tracking.configure()
        run_id, model_id = metadata.get("mlflow_run_id"), metadata.get("logged_model_id")
        metadata["mlflow_experiment_url"] = dg.MetadataValue.url(links.experiment(experiment_id))
        if run_id is not None:
            run_id = str(getattr(run_id, "value", run_id))
            metadata["mlflow_run"] = dg.MetadataValue.url(links.run(experiment_id, run_id))
        if model_id is not None:
            model_id = str(getattr(model_id, "value", model_id))
            metadata["logged_model"] = dg.MetadataValue.url(
                links.logged_model(experiment_id, model_id)
            )
    return dg.MaterializeResult(
        asset_key=event.asset_key, metadata=metadata, data_version=event.data_version
    )


def build_model(model: ModelDeclaration) -> dg.AssetsDefinition:
    key = dg.AssetKey(model.model_key)
    training_set = model.training_set.table
    training_set_key = table_key(model.training_set.table_name)
    Config = training_config(model)

    @dg.asset(
        key=key,
        group_name=names.MODELS,
        deps=[training_set_key],
        kinds={"xgboost", "mlflow"},
        check_specs=[
            dg.AssetCheckSpec(
                names.CHECK_METRICS_MEET_THRESHOLDS,
                asset=key,
                blocking=True,
                description=f"The run's test ROC AUC is at least the floor "
                f"({model.settings.min_test_roc_auc} unless configured) and its test log loss "
                "at most the configured multiple of the base rate's. A failure blocks the "
                "registry: a model below the bar is never registered or promoted.",
            ),
            dg.AssetCheckSpec(
                names.CHECK_TRIALS_RECORDED,
                asset=key,
                blocking=True,
                description="The parent MLflow run has one nested run per configured Optuna "
                "trial. A failure means the search history in MLflow is incomplete (a trial "
                "was lost or logged elsewhere), so the model's provenance cannot be audited.",
            ),
        ],
        description=model.description,
    )
    def _model(
        context: dg.AssetExecutionContext,
        config: Config,
        lakehouse: Lakehouse,
        mlflow_tracking: MlflowTracking,
        training_launcher: TrainingLauncher,
        ui_links: UiLinks,
    ):
        version = lakehouse.current_version(training_set)
        request = TrainingRequest(
            model=model.name,
            settings=TrainingSettings(**config.model_dump()),
            source=TrainingSource(lakehouse.table_reference(training_set), version),
            run_name=f"{model.name} {context.run.run_id[:8]}",
            tags=_lineage_tags(context, training_set_key, ui_links.dagster()),
        )

        def read():
            frame = lakehouse.read(training_set, version=version).select(*model.columns)
            return frame.orderBy(*model.order).toPandas()

        launched = training_launcher.launch(context, request, mlflow_tracking.target(), read)
        for event in launched:
            yield _with_links(event, mlflow_tracking, ui_links, training_launcher.where())

    return _model
