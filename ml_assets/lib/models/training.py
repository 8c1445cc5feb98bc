"""Training the churn classifier, wherever it runs: the whole recipe from a training-set frame
to a logged model, its MLflow runs and what Dagster is told about it.

One function, ``train``, does the work for both the in-process asset and the remote script
(``ml_assets/pipes/train_churn.py``) that Dagster Pipes launches as a subprocess or a Databricks
job; its inputs (``TrainingRequest``, ``TrainingSource``, ``lib.tracking.Tracking``) are plain
JSON-able data and its result reports itself (``TrainingOutcome.report``) in Pipes' metadata
format, so both paths show the same materialization and the same check results.

An Optuna search runs with one nested MLflow run per trial under one parent run; the parent
holds the final model (a probability pyfunc carrying its scoring code, and the native booster),
its test metrics, slice metrics, plots and the lineage tags it was given. Two checks are judged
from what was just recorded: ``metrics_meet_thresholds`` (a model below the bar is not passed
on) and ``trials_recorded`` (the store has as many child runs under the parent as trials were
asked for).
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import cloudpickle
import mlflow
import pandas as pd
from mlflow.models import infer_signature

from ml_assets import names
from ml_assets.lib.features.registry import CONTRACTS
from ml_assets.lib.models import churn_classifier as cc
from ml_assets.lib.models import encoding, served
from ml_assets.lib.models.encoding import request_frame
from ml_assets.lib.models.served import BOOSTER, SCHEMA, ChurnProbabilityModel
from ml_assets.lib.models.thresholds import MetricThreshold, metric_breaches
from ml_assets.lib.tracking import Tracking, log_images, log_json
from ml_assets.lib.training_sets.churn import (
    ENTITY_KEY,
    LABEL,
    LABEL_TS,
    MODEL_FEATURES,
    SPLIT,
    SPLITS,
    TRAINING_SET,
)

SERVED_MODULES = (encoding, served)  # the code a served model carries
SCORING_DISTRIBUTIONS = ("mlflow", "cloudpickle", "xgboost", "pandas", "numpy")
LOGGED_MODEL_TAG = names.TAG_LOGGED_MODEL_ID
COLUMNS = (ENTITY_KEY, *MODEL_FEATURES, LABEL, LABEL_TS, SPLIT)
ORDER = (LABEL_TS, ENTITY_KEY)  # a fixed row order: the same data and seed give the same model

Metadata = dict[str, dict[str, object]]  # Pipes' form: name -> {"raw_value": ..., "type": ...}


class TrainingRequestError(ValueError):
    """A training request with a missing or out-of-range field."""


@dataclass(frozen=True)
class TrainingSettings:
    n_trials: int = 20
    seed: int = 7
    min_test_roc_auc: float = 0.75
    max_test_log_loss_vs_base_rate: float = 1.0  # times the log loss of the base rate

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.n_trials, int) or not 1 <= self.n_trials <= 500:
            problems.append(f"n_trials={self.n_trials!r}: expected an integer from 1 to 500")
        if not isinstance(self.seed, int):
            problems.append(f"seed={self.seed!r}: expected an integer")
        if not isinstance(self.min_test_roc_auc, int | float) or not (
            0 <= self.min_test_roc_auc <= 1
        ):
            problems.append(f"min_test_roc_auc={self.min_test_roc_auc!r}: expected 0..1")
        ratio = self.max_test_log_loss_vs_base_rate
        if not isinstance(ratio, int | float) or ratio <= 0:
            problems.append(f"max_test_log_loss_vs_base_rate={ratio!r}: expected a number > 0")
        if problems:
            raise TrainingRequestError("Invalid training settings: " + "; ".join(problems))

    def thresholds(self, base_rate_log_loss: float) -> list[MetricThreshold]:
        return [
            MetricThreshold("roc_auc", threshold=self.min_test_roc_auc),
            MetricThreshold(
                "log_loss",
                threshold=self.max_test_log_loss_vs_base_rate * base_rate_log_loss,
                greater_is_better=False,
            ),
        ]


@dataclass(frozen=True)
class TrainingSource:
    """The training set to read: a Delta table's path (``file://`` or absolute) or its Unity
    Catalog name, at one version."""

    reference: str
    version: int


@dataclass(frozen=True)
class TrainingRequest:
    settings: TrainingSettings
    source: TrainingSource
    run_name: str
    tags: Mapping[str, str] = field(default_factory=dict)  # lineage, put on the parent run

    def to_json(self) -> dict[str, object]:
        return {
            "settings": asdict(self.settings),
            "source": asdict(self.source),
            "run_name": self.run_name,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> TrainingRequest:
        try:
            settings, source = data["settings"], data["source"]
            tags = data.get("tags") or {}
            if not all(isinstance(part, Mapping) for part in (settings, source, tags)):
                raise TypeError("settings, source and tags must be objects")
            return cls(
                settings=TrainingSettings(**settings),
                source=TrainingSource(str(source["reference"]), int(source["version"])),
                run_name=str(data["run_name"]),
                tags={str(k): str(v) for k, v in tags.items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, TrainingRequestError):
                raise
            raise TrainingRequestError(
                "A training request is {'settings': {...}, 'source': {'reference', 'version'}, "
                f"'run_name', 'tags'}}; found keys {sorted(data)} ({type(exc).__name__}: {exc})."
            ) from None


def read_training_frame(source: TrainingSource, spark=None) -> pd.DataFrame:
    """The training set at ``source.version`` as the recipe wants it. A path is read with
    delta-rs (no Spark needed: a subprocess reads the local tables directly); a catalog name
    with ``spark`` (on Databricks, the job's own session). Timestamps come back as Spark's
    ``toPandas`` gives them, naive UTC, so the frame equals the in-process one."""
    reference = source.reference
    if reference.startswith(("file://", "/")):
        from deltalake import DeltaTable

        path = reference.removeprefix("file://")
        arrow = DeltaTable(path, version=source.version).to_pyarrow_table(columns=list(COLUMNS))
        frame = arrow.to_pandas()
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
                frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
            if pd.api.types.is_datetime64_dtype(frame[column]):
                frame[column] = frame[column].astype("datetime64[ns]")
        return frame.sort_values(list(ORDER), kind="stable").reset_index(drop=True)
    if spark is None:
        raise TrainingRequestError(
            f"The training set {reference!r} is a table name: reading it needs a Spark session "
            "(the Databricks job's own), and none was given."
        )
    return (
        spark.read.option("versionAsOf", source.version)
        .table(reference)
        .select(*COLUMNS)
        .orderBy(*ORDER)
        .toPandas()
    )


@dataclass(frozen=True)
class CheckReport:
    name: str
    passed: bool
    description: str
    metadata: Metadata


@dataclass(frozen=True)
class Report:
    """What Dagster is told: the materialization's metadata and the checks, in Pipes' form."""

    metadata: Metadata
    checks: tuple[CheckReport, ...]


def _text(value: object) -> dict[str, object]:
    return {"raw_value": str(value), "type": "text"}


def _md(value: str) -> dict[str, object]:
    return {"raw_value": value, "type": "md"}


def _number(value: float | int) -> dict[str, object]:
    kind = "int" if isinstance(value, int) else "float"
    return {"raw_value": value, "type": kind}


@dataclass
class TrainingOutcome:
    request: TrainingRequest
    run_id: str
    model_id: str
    metrics: dict[str, float]
    best_params: dict[str, object]
    search_seconds: float
    seconds: float
    slices: pd.DataFrame
    images: dict[str, bytes]
    child_runs: int
    thresholds: list[MetricThreshold]

    def report(self) -> Report:
        settings = self.request.settings
        breached = metric_breaches(self.metrics, self.thresholds)
        trials_per_second = settings.n_trials / self.search_seconds
        metadata: Metadata = {
            "mlflow_run_id": _text(self.run_id),
            "model_uri": _text(f"runs:/{self.run_id}/model"),
            "logged_model_id": _text(self.model_id),
            "training_set_version": _number(self.request.source.version),
            **{f"test_{k}": _number(round(v, 4)) for k, v in self.metrics.items()},
            "best_params": {"raw_value": self.best_params, "type": "json"},
            "n_trials": _number(settings.n_trials),
            "search_seconds": _number(round(self.search_seconds, 1)),
            "trials_per_second": _number(round(trials_per_second, 2)),
            "seconds": _number(round(self.seconds, 1)),
            "slice_metrics": _md(_markdown_table(self.slices.round(4))),
            "plots": _md(_image_markdown(self.images)),
            "feature_tables": _text(", ".join(sorted(CONTRACTS))),
        }
        thresholds = CheckReport(
            names.CHECK_METRICS_MEET_THRESHOLDS,
            passed=not breached,
            description=(
                "Test metrics meet every threshold"
                if not breached
                else f"{len(breached)} threshold(s) breached: " + "; ".join(map(str, breached))
            ),
            metadata={
                "test_roc_auc": _number(round(self.metrics["roc_auc"], 4)),
                "min_test_roc_auc": _number(float(settings.min_test_roc_auc)),
                "test_log_loss": _number(round(self.metrics["log_loss"], 4)),
                "max_test_log_loss": _number(round(self.thresholds[1].threshold, 4)),
            },
        )
        trials = CheckReport(
            names.CHECK_TRIALS_RECORDED,
            passed=self.child_runs == settings.n_trials,
            description=f"{self.child_runs} child runs recorded under {self.run_id}; "
            f"{settings.n_trials} trials were configured",
            metadata={
                "child_runs": _number(self.child_runs),
                "n_trials": _number(settings.n_trials),
            },
        )
        return Report(metadata=metadata, checks=(thresholds, trials))


def _window_tags(frame: pd.DataFrame) -> dict[str, str]:
    """The label_ts window of each split, e.g. ``"2024-01-08..2024-03-04"``."""
    tags = {}
    for split in SPLITS:
        times = frame.loc[frame[SPLIT] == split, LABEL_TS]
        if len(times):
            tags[names.TAG_WINDOW_PREFIX + split] = (
                f"{times.min():%Y-%m-%d}..{times.max():%Y-%m-%d}"
            )
    return tags


def train(
    frame: pd.DataFrame,
    request: TrainingRequest,
    tracking: Tracking,
    log: Callable[[str], None] = print,
) -> TrainingOutcome:
    """Search, fit, evaluate and log the model; the parent run is FINISHED when this returns."""
    settings = request.settings
    data = cc.splits(frame, cc.ENCODING, LABEL, SPLIT)
    tags = {
        names.TAG_TRAINING_SET: str(TRAINING_SET.name),
        names.TAG_TRAINING_SET_VERSION: str(request.source.version),
        **_window_tags(frame),
        **request.tags,
    }
    started = time.perf_counter()
    with tracking.run(request.run_name, tags=tags) as parent:

        def log_trial(trial: cc.TrialResult) -> None:
            with tracking.run(f"trial {trial.number:03d}", nested=True):
                mlflow.log_params(trial.params)
                mlflow.log_metrics({**trial.validation, "best_iteration": trial.best_iteration})

        search = cc.search(
            data["train"],
            data["validation"],
            n_trials=settings.n_trials,
            seed=settings.seed,
            on_trial=log_trial,
        )
        search_seconds = time.perf_counter() - started
        log(
            f"{settings.n_trials} trials in {search_seconds:.1f} s "
            f"({settings.n_trials / search_seconds:.2f} trials/s); best validation ROC AUC "
            f"{search.best_value:.4f}"
        )
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
            | {"n_trials": settings.n_trials, "seed": settings.seed}
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
        model_id = log_model(booster, int(booster.best_iteration), inputs, scores)
        mlflow.set_tag(LOGGED_MODEL_TAG, model_id)
    outcome = TrainingOutcome(
        request=request,
        run_id=parent.info.run_id,
        model_id=model_id,
        metrics=metrics,
        best_params=search.best_params,
        search_seconds=search_seconds,
        seconds=time.perf_counter() - started,
        slices=slices,
        images=images,
        child_runs=len(tracking.child_runs(parent)),
        thresholds=settings.thresholds(metrics["base_rate_log_loss"]),
    )
    log(f"test ROC AUC {metrics['roc_auc']:.4f}; run {outcome.run_id}")
    return outcome


def log_model(booster, best_iteration: int, inputs: pd.DataFrame, scores) -> str:
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
                pip_requirements=requirements(),
            )
        finally:
            for module in SERVED_MODULES:
                cloudpickle.unregister_pickle_by_value(module)
    # the native flavour, too
    mlflow.xgboost.log_model(booster, name="xgboost_model", pip_requirements=requirements())
    return info.model_id


def requirements() -> list[str]:
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
