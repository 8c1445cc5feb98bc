"""Where MLflow runs go, as plain data that travels: the ``mlflow_tracking`` resource builds one
for the orchestrating process, and a training job launched elsewhere (a subprocess, a
Databricks job through Dagster Pipes) receives the same fields and opens its runs the same way.

``run`` is the one way runs are opened: it always ends the run, FINISHED when the body returns
and FAILED when it raises (the exception still propagates), so no run is ever left RUNNING by a
failed step.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Run, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from ml_assets.names import NOTE_TAG as NOTE  # MLflow's description of runs and experiments


@dataclass(frozen=True)
class Tracking:
    """A tracking store and experiment. ``registry_uri`` is set where the tracking store is
    also the registry (the local SQLite store)."""

    tracking_uri: str
    experiment_name: str
    artifact_location: str | None = None
    registry_uri: str | None = None
    description: str | None = None  # the experiment's, set when it has none

    def to_json(self) -> dict[str, str | None]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Tracking:
        fields = {
            "tracking_uri",
            "experiment_name",
            "artifact_location",
            "registry_uri",
            "description",
        }
        unknown = set(data) - fields
        if unknown or not isinstance(data.get("tracking_uri"), str):
            raise ValueError(
                f"A tracking target has the fields {sorted(fields)} (tracking_uri and "
                f"experiment_name required); found {sorted(data)}."
            )
        return cls(**{k: v for k, v in data.items() if k in fields})  # type: ignore[arg-type]

    def configure(self) -> str:
        """Point this process's MLflow at the store; returns the experiment id (created if
        missing)."""
        if self.registry_uri is not None:
            mlflow.set_registry_uri(self.registry_uri)
        mlflow.set_tracking_uri(self.tracking_uri)
        client = MlflowClient(self.tracking_uri, self.registry_uri)
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            experiment_id = client.create_experiment(
                self.experiment_name, artifact_location=self.artifact_location
            )
        else:
            experiment_id = experiment.experiment_id
        if self.description and (experiment is None or NOTE not in experiment.tags):
            client.set_experiment_tag(experiment_id, NOTE, self.description)
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    def client(self) -> MlflowClient:
        self.configure()
        return MlflowClient(self.tracking_uri, self.registry_uri)

    def child_runs(self, parent: Run) -> list[Run]:
        """The runs nested under ``parent`` (e.g. one per Optuna trial), as the store has them."""
        return self.client().search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent.info.run_id}'",
        )

    @contextmanager
    def run(
        self, run_name: str, *, tags: Mapping[str, str] | None = None, nested: bool = False
    ) -> Iterator[mlflow.ActiveRun]:
        if not nested:
            self.configure()
        active = mlflow.start_run(run_name=run_name, tags=dict(tags or {}), nested=nested)
        try:
            yield active
        except BaseException:
            mlflow.end_run(status=RunStatus.to_string(RunStatus.FAILED))
            raise
        mlflow.end_run(status=RunStatus.to_string(RunStatus.FINISHED))


def log_images(images: Mapping[str, bytes], artifact_path: str = "plots") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in images.items():
            (Path(tmp) / name).write_bytes(data)
        mlflow.log_artifacts(tmp, artifact_path=artifact_path)


def log_json(obj: object, name: str) -> None:
    mlflow.log_text(json.dumps(obj, indent=2, sort_keys=True, default=str), name)


def log_text_artifact(text: str, artifact_file: str) -> tuple[str, str] | None:
    """A text artifact on the active run; its (experiment id, run id), None without a run."""
    run = mlflow.active_run()
    if run is None:
        return None
    mlflow.log_text(text, artifact_file)
    return run.info.experiment_id, run.info.run_id


def log_metric_series(name: str, points: list[tuple[int, int, float]]) -> None:
    """(timestamp ms, step, value) points of one metric on the active run, in one call."""
    run = mlflow.active_run()
    if run is not None and points:
        MlflowClient().log_batch(
            run.info.run_id, metrics=[Metric(name, v, ts, step) for ts, step, v in points]
        )
