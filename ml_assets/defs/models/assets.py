"""``models/churn_classifier``: an Optuna search with one nested MLflow run per trial under
one parent run per materialization; the parent holds the final model, its test metrics,
slice metrics, plots and the lineage of the data it was trained on.

Checks computed in the asset from what it just recorded (like row conservation in the raw
stage): ``metrics_meet_thresholds`` (blocking: a model below the bar is not passed on) and
``trials_recorded`` (the parent run has as many child runs in MLflow as trials were asked for).
"""

import base64
import json
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path

import cloudpickle
import dagster as dg
import mlflow
import pandas as pd
from mlflow.models import infer_signature
from pydantic import Field

from ml_assets import names
from ml_assets.defs.training_sets.assets import TRAINING_SET_KEY, recorded_lineage
from ml_assets.deployments import REPO_ROOT
from ml_assets.lib.features.registry import CONTRACTS
from ml_assets.lib.models import churn_classifier as cc
from ml_assets.lib.models import encoding, served
from ml_assets.lib.models.encoding import request_frame
from ml_assets.lib.models.served import BOOSTER, SCHEMA, ChurnProbabilityModel
from ml_assets.lib.models.thresholds import MetricThreshold, metric_breaches
from ml_assets.lib.training_sets.churn import (
    ENTITY_KEY,
    LABEL,
    LABEL_TS,
    MODEL_FEATURES,
    SPLIT,
    SPLITS,
    TRAINING_SET,
)
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.mlflow import MlflowTracking, log_images, log_json

MODEL_KEY = dg.AssetKey(names.CHURN_CLASSIFIER_KEY)
SERVED_MODULES = (encoding, served)  # the code a served model carries
SCORING_DISTRIBUTIONS = ("mlflow", "cloudpickle", "xgboost", "pandas", "numpy")
LOGGED_MODEL_TAG = "ml_assets.logged_model_id"  # the pyfunc a registered version points at


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


def _lineage_tags(
    context: dg.AssetExecutionContext, version: int, frame: pd.DataFrame
) -> dict[str, str]:
    lineage = recorded_lineage(context.instance)
    tags = {
        "ml_assets.training_set": str(TRAINING_SET.name),
        "ml_assets.training_set_version": str(version),
        "ml_assets.git_commit": _git_commit(),
        "ml_assets.dagster_run_id": context.run.run_id,
    }
    for split in SPLITS:  # the label_ts window of each split, e.g. "2024-01-08..2024-03-04"
        times = frame.loc[frame[SPLIT] == split, LABEL_TS]
        if len(times):
            tags[f"ml_assets.window.{split}"] = f"{times.min():%Y-%m-%d}..{times.max():%Y-%m-%d}"
    if lineage is not None:
        tags["ml_assets.training_set_hash"] = lineage.content_hash
        for table, table_version in lineage.table_versions.items():
            tags[f"ml_assets.version.{table}"] = str(table_version)
    return tags


def _log_model(booster, best_iteration: int, inputs: pd.DataFrame, scores) -> str:
    """Logs the probability pyfunc (``model``) and the native booster; returns the logged
    model id of the pyfunc, which is what a registered version points at."""
    with tempfile.TemporaryDirectory() as tmp:
        booster_path, schema_path = Path(tmp) / "booster.ubj", Path(tmp) / "schema.json"
        booster.save_model(booster_path)
        schema_path.write_text(
            json.dumps(
                {
                    "feature_columns": list(cc.ENCODING.columns),
                    "categories": {k: list(v) for k, v in cc.ENCODING.categories.items()},
                    "best_iteration": best_iteration,
                }
            )
        )
        # The scoring code travels inside the model (pickled by value), so loading it needs
        # only the pinned requirements below, not this package.
        for module in SERVED_MODULES:
            cloudpickle.register_pickle_by_value(module)
        try:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=ChurnProbabilityModel(),
                artifacts={BOOSTER: str(booster_path), SCHEMA: str(schema_path)},
                signature=infer_signature(inputs, pd.Series(scores, name="churn_probability")),
                input_example=inputs.head(5),
                pip_requirements=_requirements(),
            )
        finally:
            for module in SERVED_MODULES:
                cloudpickle.unregister_pickle_by_value(module)
    # the native flavour, too
    mlflow.xgboost.log_model(booster, name="xgboost_model", pip_requirements=_requirements())
    return info.model_id


def _requirements() -> list[str]:
    """What scoring imports, pinned to this environment. (Left to itself, MLflow infers them
    by importing the model in a subprocess: about 10 s per logged model.)"""
    return [f"{dist}=={metadata.version(dist)}" for dist in SCORING_DISTRIBUTIONS]


def _markdown_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, *rows])


def _image_markdown(images: dict[str, bytes]) -> str:
    return "\n\n".join(
        f"**{name.removesuffix('.png').replace('_', ' ')}**\n\n"
        f"![{name}](data:image/png;base64,{base64.b64encode(data).decode()})"
        for name, data in images.items()
    )


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
):
    version = lakehouse.version(TRAINING_SET)
    frame = (
        lakehouse.read(TRAINING_SET, version=version)
        .select(ENTITY_KEY, *MODEL_FEATURES, LABEL, LABEL_TS, SPLIT)
        # a fixed row order: the same training set and seed give the same model
        .orderBy(LABEL_TS, ENTITY_KEY)
        .toPandas()
    )
    data = cc.splits(frame, cc.ENCODING, LABEL, SPLIT)
    started = time.perf_counter()
    with mlflow_tracking.run(
        f"churn_classifier {context.run.run_id[:8]}", tags=_lineage_tags(context, version, frame)
    ) as parent:

        def log_trial(trial: cc.TrialResult) -> None:
            with mlflow_tracking.run(f"trial {trial.number:03d}", nested=True):
                mlflow.log_params(trial.params)
                mlflow.log_metrics({**trial.validation, "best_iteration": trial.best_iteration})

        search = cc.search(
            data["train"],
            data["validation"],
            n_trials=config.n_trials,
            seed=config.seed,
            on_trial=log_trial,
        )
        search_seconds = time.perf_counter() - started
        booster = cc.fit(search.best_params, data["train"], data["validation"])
        threshold = cc.choose_threshold(
            data["validation"].label, cc.predict(booster, data["validation"].features), cc.COSTS
        )
        test = data["test"]
        scores = cc.predict(booster, test.features)
        metrics = cc.evaluate(test.label, scores, threshold, cc.COSTS)
        base_rate = float(data["train"].label.mean())
        metrics["base_rate_log_loss"] = float(
            cc.skm.log_loss(test.label, [base_rate] * len(test.label))
        )
        test_frame = frame[frame[SPLIT] == "test"].reset_index(drop=True)
        slices = cc.slice_metrics(test_frame, test.label, scores)
        importance = cc.feature_importance(booster)
        images = cc.figures(test.label, scores, threshold, importance)

        mlflow.log_params(
            {f"best_{k}": v for k, v in search.best_params.items()}
            | {"n_trials": config.n_trials, "seed": config.seed}
        )
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        mlflow.log_metric("best_validation_roc_auc", search.best_value)
        mlflow.log_metrics(
            {
                f"test_roc_auc__{r.slice}__{r.value}": r.roc_auc
                for r in slices.itertuples()
                if r.roc_auc is not None
            }
        )
        log_images(images)
        log_json(importance, "feature_importance.json")
        mlflow.log_text(slices.to_csv(index=False), "slice_metrics.csv")
        inputs = request_frame(test_frame, cc.ENCODING)
        model_id = _log_model(booster, int(booster.best_iteration), inputs, scores)
        mlflow.set_tag(LOGGED_MODEL_TAG, model_id)
        run_id = parent.info.run_id
    seconds = time.perf_counter() - started

    children = mlflow_tracking.child_runs(parent)
    thresholds = [
        MetricThreshold("roc_auc", threshold=config.min_test_roc_auc),
        MetricThreshold(
            "log_loss",
            threshold=config.max_test_log_loss_vs_base_rate * metrics["base_rate_log_loss"],
            greater_is_better=False,
        ),
    ]
    breached = metric_breaches(metrics, thresholds)
    context.log.info(
        "churn_classifier: %d trials in %.1f s (%.2f trials/s); test ROC AUC %.4f; run %s",
        config.n_trials,
        search_seconds,
        config.n_trials / search_seconds,
        metrics["roc_auc"],
        run_id,
    )
    yield dg.MaterializeResult(
        metadata={
            "mlflow_run_id": run_id,
            "mlflow_experiment": mlflow_tracking.experiment_name,
            "mlflow_ui": mlflow_tracking.ui_hint(),
            "model_uri": f"runs:/{run_id}/model",
            "logged_model_id": model_id,
            "training_set_version": version,
            **{f"test_{k}": round(v, 4) for k, v in metrics.items()},
            "best_params": dg.MetadataValue.json(search.best_params),
            "n_trials": config.n_trials,
            "search_seconds": round(search_seconds, 1),
            "trials_per_second": round(config.n_trials / search_seconds, 2),
            "seconds": round(seconds, 1),
            "slice_metrics": dg.MetadataValue.md(_markdown_table(slices.round(4))),
            "plots": dg.MetadataValue.md(_image_markdown(images)),
            "feature_tables": ", ".join(sorted(CONTRACTS)),
        }
    )
    yield dg.AssetCheckResult(
        check_name=names.CHECK_METRICS_MEET_THRESHOLDS,
        passed=not breached,
        description=(
            "Test metrics meet every threshold"
            if not breached
            else f"{len(breached)} threshold(s) breached: " + "; ".join(map(str, breached))
        ),
        metadata={
            "test_roc_auc": round(metrics["roc_auc"], 4),
            "min_test_roc_auc": config.min_test_roc_auc,
            "test_log_loss": round(metrics["log_loss"], 4),
            "max_test_log_loss": round(thresholds[1].threshold, 4),
        },
    )
    yield dg.AssetCheckResult(
        check_name=names.CHECK_TRIALS_RECORDED,
        passed=len(children) == config.n_trials,
        description=f"{len(children)} child runs recorded under {run_id}; "
        f"{config.n_trials} trials were configured",
        metadata={"child_runs": len(children), "n_trials": config.n_trials},
    )
