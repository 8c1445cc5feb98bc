"""MLflow tracking: the tracking URI and the experiment from one resource.

``LocalMlflow`` keeps everything under ``ML_ASSETS_HOME``: the tracking store in ``mlflow.db``
(SQLite, which also holds the local registry) and artifacts in ``mlartifacts/``, so ``mlflow
ui`` on those paths shows the runs. ``DatabricksMlflow`` tracks to the workspace
(``databricks``). Registered models are the ``model_registry`` resource's
(``resources/registry.py``).

Each resource hands out its ``target()``, a ``lib.tracking.Tracking`` (plain data): runs are
opened through it (``Tracking.run`` always ends them, FAILED when the body raises), here and in
a training job launched elsewhere through Dagster Pipes. (dagster-mlflow 0.29 offers a legacy
resource with one run per Dagster run, no nesting and no Unity Catalog registry, and cannot
travel to a Pipes job: it is not a dependency; runs are managed here instead.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from ml_assets.lib.tracking import Tracking

EXPERIMENT_DESCRIPTION = (
    "Training runs of the ml_assets models: one parent run per materialization of a "
    "`models/<name>` asset in Dagster (the tag `ml_assets.model` names the model), with one "
    "nested run per Optuna trial, the training set as a dataset input, test and slice metrics, "
    "plots and the logged model; its description links back to the Dagster run. The drift "
    "monitors log their reports here too (runs named `<stem> feature drift ...`)."
)


class MlflowTracking(dg.ConfigurableResource, ABC):
    experiment_name: str = "/ml_assets/churn"

    @abstractmethod
    def tracking_uri(self) -> str: ...

    @abstractmethod
    def artifact_location(self) -> str | None: ...

    def registry_uri(self) -> str | None:
        """Set where the tracking store is also the registry."""
        return None

    def target(self) -> Tracking:
        return Tracking(
            tracking_uri=self.tracking_uri(),
            experiment_name=self.experiment_name,
            artifact_location=self.artifact_location(),
            registry_uri=self.registry_uri(),
            description=EXPERIMENT_DESCRIPTION,
        )

    def configure(self) -> str:
        """Point the process's MLflow at this store; returns the experiment id."""
        return self.target().configure()

    def client(self) -> MlflowClient:
        """A client of the tracking store (runs, experiments, artifacts)."""
        return self.target().client()

    def child_runs(self, parent: Run) -> list[Run]:
        """The runs nested under ``parent`` (e.g. one per Optuna trial)."""
        return self.target().child_runs(parent)

    @contextmanager
    def run(
        self,
        run_name: str,
        *,
        tags: Mapping[str, str] | None = None,
        nested: bool = False,
    ) -> Iterator[mlflow.ActiveRun]:
        with self.target().run(run_name, tags=tags, nested=nested) as active:
            yield active


class LocalMlflow(MlflowTracking):
    home: str

    def tracking_uri(self) -> str:
        return f"sqlite:///{Path(self.home) / 'mlflow.db'}"

    def artifact_location(self) -> str | None:
        return (Path(self.home) / "mlartifacts").as_uri()

    def registry_uri(self) -> str | None:
        """The local store is the registry too."""
        return self.tracking_uri()


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
