"""MLflow tracking: the tracking URI and the experiment from one resource.

``LocalMlflow`` keeps everything under ``ML_ASSETS_HOME``: the tracking store in ``mlflow.db``
(SQLite, which also holds the local registry) and artifacts in ``mlartifacts/``, so ``mlflow
ui`` on those paths shows the runs. ``DatabricksMlflow`` tracks to the workspace
(``databricks``). Registered models are the ``model_registry`` resource's
(``resources/registry.py``).

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
from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID


class MlflowTracking(dg.ConfigurableResource, ABC):
    experiment_name: str = "/ml_assets/churn"

    @abstractmethod
    def tracking_uri(self) -> str: ...

    @abstractmethod
    def artifact_location(self) -> str | None: ...

    def configure(self) -> str:
        """Point the process's MLflow at this store; returns the experiment id."""
        mlflow.set_tracking_uri(self.tracking_uri())
        client = MlflowClient(self.tracking_uri())
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
        """A client of the tracking store (runs, experiments, artifacts)."""
        self.configure()
        return MlflowClient(self.tracking_uri())

    def child_runs(self, parent: Run) -> list[Run]:
        """The runs nested under ``parent`` (e.g. one per Optuna trial)."""
        return self.client().search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent.info.run_id}'",
        )

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

    def artifact_location(self) -> str | None:
        return (Path(self.home) / "mlartifacts").as_uri()

    def configure(self) -> str:
        """The local store is the registry too: point both of the process's URIs at it."""
        mlflow.set_registry_uri(self.tracking_uri())
        return super().configure()

    def client(self) -> MlflowClient:
        self.configure()
        return MlflowClient(self.tracking_uri(), self.tracking_uri())


def log_images(images: Mapping[str, bytes], artifact_path: str = "plots") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in images.items():
            (Path(tmp) / name).write_bytes(data)
        mlflow.log_artifacts(tmp, artifact_path=artifact_path)


def log_json(obj: object, name: str) -> None:
    mlflow.log_text(json.dumps(obj, indent=2, sort_keys=True, default=str), name)


class DatabricksMlflow(MlflowTracking):
    """Tracking in a Databricks workspace (``databricks`` or ``databricks://<profile>``):
    credentials from ``DATABRICKS_HOST``/``DATABRICKS_TOKEN`` or the profile, read by MLflow
    on the first call. Experiments are workspace paths; artifacts go where the workspace puts
    them."""

    experiment_name: str = "/Shared/ml_assets/churn"
    profile: str | None = None

    def tracking_uri(self) -> str:
        return "databricks" + (f"://{self.profile}" if self.profile else "")

    def artifact_location(self) -> str | None:
        return None

    def ui_hint(self) -> str:
        return f"the workspace's Experiments page, experiment {self.experiment_name}"
