"""MLflow: tracking URI, registry URI and experiment from one resource.

``LocalMlflow`` keeps everything under ``ML_ASSETS_HOME``: the tracking and registry store in
``mlflow.db`` (SQLite) and artifacts in ``mlartifacts/``, so ``mlflow ui`` on those paths
shows the runs. A Databricks implementation would return ``databricks`` / ``databricks-uc``.

``run`` is the one way runs are opened here: it always ends the run, FINISHED when the body
returns and FAILED when it raises (the exception still propagates), so no run is ever left
RUNNING by a failed materialization. (dagster-mlflow 0.29 offers a legacy resource with one
run per Dagster run and no nesting or registry; runs are managed here instead.)
"""

from __future__ import annotations

import json
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from pydantic import Field

from ml_assets.names import CHURN_MODEL_NAME


class MlflowTracking(dg.ConfigurableResource, ABC):
    experiment_name: str = "/ml_assets/churn"
    registered_model_name: str = Field(
        CHURN_MODEL_NAME,
        description="The churn classifier's registered model (catalog.schema.model in Unity "
        "Catalog); every registry asset and the rollback job use this name.",
    )

    @abstractmethod
    def tracking_uri(self) -> str: ...

    @abstractmethod
    def registry_uri(self) -> str: ...

    @abstractmethod
    def artifact_location(self) -> str | None: ...

    def configure(self) -> str:
        """Point the process's MLflow at this store; returns the experiment id."""
        mlflow.set_tracking_uri(self.tracking_uri())
        mlflow.set_registry_uri(self.registry_uri())
        client = MlflowClient()
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            experiment_id = client.create_experiment(
                self.experiment_name, artifact_location=self.artifact_location()
            )
        else:
            experiment_id = experiment.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    def client(self) -> MlflowClient:
        self.configure()
        return MlflowClient()

    @contextmanager
    def run(
        self,
        run_name: str,
        *,
        tags: Mapping[str, str] | None = None,
        nested: bool = False,
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

    def ui_hint(self) -> str:
        return f"mlflow ui --backend-store-uri {self.tracking_uri()}" + (
            f" --default-artifact-root {self.artifact_location()}"
            if self.artifact_location()
            else ""
        )


class LocalMlflow(MlflowTracking):
    home: str

    def tracking_uri(self) -> str:
        return f"sqlite:///{Path(self.home) / 'mlflow.db'}"

    def registry_uri(self) -> str:
        return self.tracking_uri()

    def artifact_location(self) -> str | None:
        return (Path(self.home) / "mlartifacts").as_uri()


def log_images(images: Mapping[str, bytes], artifact_path: str = "plots") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in images.items():
            (Path(tmp) / name).write_bytes(data)
        mlflow.log_artifacts(tmp, artifact_path=artifact_path)


def log_json(obj: object, name: str) -> None:
    mlflow.log_text(json.dumps(obj, indent=2, sort_keys=True, default=str), name)
