"""Training a declared model, wherever it runs: the whole recipe from a training-set frame to a
logged model, its MLflow runs and what Dagster is told about it.

One function, ``train``, does the work for both the in-process asset and the remote script
(``ml_assets/pipes/train_model.py``) that Dagster Pipes launches as a subprocess or a Databricks
job; its inputs (``TrainingRequest``: the model's name in ``lib/models/catalog``, its settings and
its ``TrainingSource``; ``lib.tracking.Tracking``) are plain JSON-able data and its result
reports itself (``TrainingOutcome.report``) in Pipes' metadata format, so both paths show the
same materialization and the same check results.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib import metadata
from pathlib import Path

import cloudpickle
import mlflow
import pandas as pd
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.models import infer_signature
from mlflow.types import ColSpec, DataType, Schema

from ml_assets import names
from ml_assets.lib.models import classifier as cc
from ml_assets.lib.models import encoding, served
from ml_assets.lib.models.catalog import model_named
from ml_assets.lib.models.declaration import (
    ModelDeclaration,
    TrainingRequestError,
    TrainingSettings,
)
from ml_assets.lib.models.encoding import request_frame
from ml_assets.lib.models.served import BOOSTER, SCHEMA, ProbabilityModel
from ml_assets.lib.models.thresholds import MetricThreshold, metric_breaches
from ml_assets.lib.tracking import Tracking, log_images, log_json
from ml_assets.lib.training_sets.declaration import SPLIT, SPLITS

SERVED_MODULES = (encoding, served)  # the code a served model carries
SCORING_DISTRIBUTIONS = ("mlflow", "cloudpickle", "xgboost", "pandas", "numpy")
LOGGED_MODEL_TAG = names.TAG_LOGGED_MODEL_ID

Metadata = dict[str, dict[str, object]]  # Pipes' form: name -> {"raw_value": ..., "type": ...}


@dataclass(frozen=True)
class TrainingSource:
    """The training set to read: a Delta table's path (``file://`` or absolute) or its Unity
    Catalog name, at one version."""

    reference: str
    version: int


@dataclass(frozen=True)
class TrainingRequest:
    model: str  # a name in lib/models/catalog
    settings: TrainingSettings
    source: TrainingSource
    run_name: str
    tags: Mapping[str, str] = field(default_factory=dict)  # lineage, put on the parent run

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
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
                model=str(data["model"]),
                settings=TrainingSettings(**settings),
                source=TrainingSource(str(source["reference"]), int(source["version"])),
                run_name=str(data["run_name"]),
                tags={str(k): str(v) for k, v in tags.items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, TrainingRequestError):
                raise
            raise TrainingRequestError(
                "A training request is {'model', 'settings': {...}, 'source': {'reference', "
                f"'version'}}, 'run_name', 'tags'}}; found keys {sorted(data)} "
                f"({type(exc).__name__}: {exc})."
            ) from None

    @property
    def declaration(self) -> ModelDeclaration:
        return model_named(self.model)


def read_training_frame(
    source: TrainingSource, model: ModelDeclaration, spark=None
) -> pd.DataFrame:
    """The training set at ``source.version`` as the recipe wants it. A path is read with
    delta-rs (no Spark needed: a subprocess reads the local tables directly); a catalog name
    with ``spark`` (on Databricks, the job's own session). Timestamps come back as Spark's
    ``toPandas`` gives them, naive UTC, so the frame equals the in-process one."""
    reference = source.reference
    if reference.startswith(("file://", "/")):
        from deltalake import DeltaTable

        path = reference.removeprefix("file://")
        arrow = DeltaTable(path, version=source.version).to_pyarrow_table(
            columns=list(model.columns)
        )
        frame = arrow.to_pandas()
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
                frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
            if pd.api.types.is_datetime64_dtype(frame[column]):
                frame[column] = frame[column].astype("datetime64[ns]")
        return frame.sort_values(list(model.order), kind="stable").reset_index(drop=True)
    if spark is None:
        raise TrainingRequestError(
            f"The training set {reference!r} is a table name: reading it needs a Spark session "
            "(the Databricks job's own), and none was given."
        )
    return (
        spark.read.option("versionAsOf", source.version)
        .table(reference)
        .select(*model.columns)
        .orderBy(*model.order)
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
            # identifiers and settings as text: the UI plots numbers, and a flat line of a
            # version or a trial count says nothing
            "training_set_version": _text(self.request.source.version),
            **{f"test_{k}": _number(round(v, 4)) for k, v in self.metrics.items()},
            "best_params": {"raw_value": self.best_params, "type": "json"},
            "n_trials": _text(settings.n_trials),
            "search_seconds": _number(round(self.search_seconds, 1)),
            "trials_per_second": _number(round(trials_per_second, 2)),
            "seconds": _number(round(self.seconds, 1)),
            "slice_metrics": _md(_markdown_table(self.slices.round(4))),
            "plots": _md(_image_markdown(self.images)),
            "feature_tables": _text(
                ", ".join(self.request.declaration.training_set.feature_tables)
            ),
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
                "min_test_roc_auc": _text(float(settings.min_test_roc_auc)),
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
                "n_trials": _text(settings.n_trials),
            },
        )
        return Report(metadata=metadata, checks=(thresholds, trials))


def _window_tags(frame: pd.DataFrame, timestamp: str) -> dict[str, str]:
    """The observation-time window of each split, e.g. ``"2024-01-08..2024-03-04"``."""
    tags = {}
    for split in SPLITS:
        times = frame.loc[frame[SPLIT] == split, timestamp]
        if len(times):
            tags[names.TAG_WINDOW_PREFIX + split] = (
                f"{times.min():%Y-%m-%d}..{times.max():%Y-%m-%d}"
            )
    return tags


def ablated(frame: pd.DataFrame, model, features: Sequence[str]) -> pd.DataFrame:
    """``frame`` with ``features`` set to 0 (numeric model features only)."""
    if not features:
        return frame
    numeric = {c for c in model.encoding.columns if c not in model.encoding.categories}
    wrong = sorted(set(features) - numeric)
    if wrong:
        raise TrainingRequestError(
            f"ablated_features {wrong}: not numeric features of {model.name} (expected some of "
            f"{sorted(numeric)})."
        )
    return frame.assign(**{f: 0 for f in features})


def train(
    frame: pd.DataFrame,
    request: TrainingRequest,
    tracking: Tracking,
    log: Callable[[str], None] = print,
) -> TrainingOutcome:
    """Search, fit, evaluate and log the model; the parent run is FINISHED when this returns."""
    settings, model = request.settings, request.declaration
    frame = ablated(frame, model, settings.ablated_features)
    data = cc.splits(frame, model.encoding, model.label, SPLIT)
    tags = {
        names.TAG_MODEL: model.name,
        names.TAG_TRAINING_SET: model.training_set.table_name,
        names.TAG_TRAINING_SET_VERSION: str(request.source.version),
        **_window_tags(frame, model.timestamp),
        **request.tags,
    }
    if settings.ablated_features:
        tags[names.TAG_ABLATED_FEATURES] = ",".join(settings.ablated_features)
    tags[names.NOTE_TAG] = run_description(model, request, tags)
    started = time.perf_counter()
    with tracking.run(request.run_name, tags=tags) as parent:
        mlflow.log_input(training_dataset(frame, request, model), context="training")

        def log_trial(trial: cc.TrialResult) -> None:  # inside the trial's own open run
            mlflow.log_params(trial.params)
            mlflow.log_metrics(
                {
                    **trial.validation,
                    "best_iteration": trial.best_iteration,
                    "fit_seconds": round(trial.fit_seconds, 4),
                }
            )

        search = cc.search(
            data["train"],
            data["validation"],
            n_trials=settings.n_trials,
            seed=settings.seed,
            on_trial=log_trial,
            # each trial's nested run is open while the trial fits: its duration is the trial's
            trial_scope=lambda number: tracking.run(
                f"trial {number:03d}", nested=True, tags={names.TAG_MODEL: model.name}
            ),
        )
        search_seconds = time.perf_counter() - started
        log(
            f"{settings.n_trials} trials in {search_seconds:.1f} s "
            f"({settings.n_trials / search_seconds:.2f} trials/s); best validation ROC AUC "
            f"{search.best_value:.4f}"
        )
        booster = cc.fit(search.best_params, data["train"], data["validation"])
        threshold = cc.choose_threshold(
            data["validation"].label, cc.predict(booster, data["validation"].features), model.costs
        )
        test = data["test"]
        scores = cc.predict(booster, test.features)
        metrics = cc.evaluate(test.label, scores, threshold, model.costs)
        base_rate = float(data["train"].label.mean())
        metrics["base_rate_log_loss"] = float(
            cc.skm.log_loss(test.label, [base_rate] * len(test.label))
        )
        test_frame = frame[frame[SPLIT] == "test"].reset_index(drop=True)
        slices = cc.slice_metrics(test_frame, test.label, scores, model.slices)
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
        inputs = request_frame(test_frame, model.encoding)
        model_id = log_model(model, booster, int(booster.best_iteration), inputs, scores)
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


def run_description(
    model: ModelDeclaration, request: TrainingRequest, tags: Mapping[str, str]
) -> str:
    """The parent run's description (markdown, shown on the run page): what it trains, on
    which data, and where in Dagster it came from."""
    lines = [
        f"**{model.name}**: {model.description}",
        f"Training set `{model.training_set.table_name}` v{request.source.version}"
        + (
            f" (content hash `{tags[names.TAG_TRAINING_SET_HASH][:16]}`)"
            if names.TAG_TRAINING_SET_HASH in tags
            else ""
        )
        + f"; {request.settings.n_trials} Optuna trials as nested runs.",
    ]
    run_url, asset_url = tags.get(names.TAG_DAGSTER_RUN_URL), tags.get(names.TAG_DAGSTER_ASSET_URL)
    if run_url and asset_url:
        lines.append(
            f"Trained by Dagster run [{tags.get(names.TAG_DAGSTER_RUN_ID, 'run')[:8]}]"
            f"({run_url}), materializing [{'/'.join(model.model_key)}]({asset_url})."
        )
    return "\n\n".join(lines)


def training_dataset(frame: pd.DataFrame, request: TrainingRequest, model: ModelDeclaration):
    """The training set as an MLflow dataset input: its Delta table (path or Unity Catalog
    name) at the version read, the digest its content hash (MLflow keeps 36 characters)."""
    reference = request.source.reference
    is_path = reference.startswith(("file:", "/", "dbfs:", "s3:", "abfss:", "gs:"))
    source = DeltaDatasetSource(
        path=reference if is_path else None,
        delta_table_name=None if is_path else reference,
        delta_table_version=request.source.version,
    )
    digest = request.tags.get(names.TAG_TRAINING_SET_HASH)
    return TrainingSetDataset(
        df=frame,
        source=source,
        targets=model.label,
        name=model.training_set.table_name,
        digest=digest[:32] if digest else None,
    )


# NumPy dtypes MLflow's inference maps one to one (``mlflow.types.utils._infer_numpy_dtype``)
_MLFLOW_TYPES = {
    "bool": DataType.boolean,
    "int8": DataType.integer,
    "int16": DataType.integer,
    "int32": DataType.integer,
    "int64": DataType.long,
    "float32": DataType.float,
    "float64": DataType.double,
}


def dataset_schema(frame: pd.DataFrame) -> Schema | None:
    """The MLflow schema of ``frame``, as ``mlflow.data.from_pandas`` infers it, from the
    columns' types; None when a column is of another kind. MLflow's inference looks at every
    value in Python, for whether a column holds a null and for a text column's type: 0.7-1.5 s
    for the demo's 64k-row training set, each time a model is trained. Here a column of strings
    (as pandas infers them, in C) is a string, a NumPy number or bool its MLflow type, a
    timestamp a datetime, and a column is required when it has no null (``isna``).
    ``test_training_dataset.py`` compares the two on every kind of column."""
    specs = []
    for name in frame.columns:
        column = frame[name]
        dtype = column.dtype
        if dtype.kind == "O" and pd.api.types.infer_dtype(column, skipna=True) == "string":
            kind = DataType.string
        elif dtype.kind == "M":
            kind = DataType.datetime
        elif str(dtype) in _MLFLOW_TYPES:
            kind = _MLFLOW_TYPES[str(dtype)]
        else:
            return None
        specs.append(ColSpec(kind, name, required=not column.isna().any()))
    return Schema(specs)


class TrainingSetDataset(PandasDataset):
    """``mlflow.data.from_pandas``'s dataset, its schema read from the columns' types
    (:func:`dataset_schema`) where they settle it, else inferred by MLflow as before."""

    @cached_property
    def schema(self) -> Schema | None:
        declared = dataset_schema(self.df)
        return declared if declared is not None else super().schema


def log_model(
    model: ModelDeclaration, booster, best_iteration: int, inputs: pd.DataFrame, scores
) -> str:
    """Logs the probability pyfunc (``model``) and the native booster; returns the logged
    model id of the pyfunc, which is what a registered version points at."""
    with tempfile.TemporaryDirectory() as tmp:
        booster_path, schema_path = Path(tmp) / "booster.ubj", Path(tmp) / "schema.json"
        booster.save_model(booster_path)
        schema_path.write_text(
            json.dumps(
                {
                    "feature_columns": list(model.encoding.columns),
                    "categories": {k: list(v) for k, v in model.encoding.categories.items()},
                    "best_iteration": best_iteration,
                    "output": model.output,
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
                python_model=ProbabilityModel(),
                artifacts={BOOSTER: str(booster_path), SCHEMA: str(schema_path)},
                signature=infer_signature(inputs, pd.Series(scores, name=model.output)),
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
