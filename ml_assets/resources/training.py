"""The ``training_launcher`` resource: where a declared model's training step runs.

- ``InProcessTraining`` (the local default): in the Dagster step's own process.
- ``SubprocessTraining``: ``ml_assets/pipes/train_model.py`` in a local subprocess through
  Dagster Pipes (``dagster.PipesSubprocessClient``).
- ``DatabricksTraining``: the same script as a Databricks job through Dagster Pipes
  (``dagster_databricks.PipesDatabricksClient`` on a cluster, or
  ``PipesDatabricksServerlessClient`` on serverless compute). It uploads the script and a zip
  of this package to a Unity Catalog volume (under a directory named by their content hash, so
  the job runs exactly the orchestrator's code), installs the pinned libraries the recipe needs
  on the job, and exchanges the Pipes context and messages through files in that volume.

All three call ``lib.models.training.train`` with the same request and report the same
materialization metadata and check results (a remote check's description travels in its
metadata, Pipes having no field for it, and is put back in place here). Logs stream back as
the job runs; a job that fails, or ends without reporting, fails the step.
"""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

import ml_assets
from ml_assets.lib.models.training import Metadata, Report, TrainingRequest, train
from ml_assets.lib.tracking import Tracking
from ml_assets.pipes import train_model
from ml_assets.resources.databricks import calling_workspace, workspace_client

SCRIPT = Path(train_model.__file__)
TrainingEvents = Iterator[dg.MaterializeResult | dg.AssetCheckResult]
# What the job installs, pinned to this environment: what the recipe's result depends on.
# pyspark, pyarrow, pandas, numpy, matplotlib and pydantic are left to the Databricks runtime,
# which ships them and whose Spark session uses them; the logged model pins the versions it
# was trained with, whichever they are.
REMOTE_DISTRIBUTIONS = (
    "dagster-pipes",
    "mlflow",
    "optuna",
    "xgboost",
    "scikit-learn",
    "cloudpickle",
)


def dagster_metadata(values: Metadata) -> dict[str, dg.MetadataValue]:
    """Pipes' metadata form (``{"raw_value", "type"}``) as Dagster's own values, for the
    in-process path."""
    build: dict[str, Callable[[object], dg.MetadataValue]] = {
        "text": lambda v: dg.MetadataValue.text(str(v)),
        "md": lambda v: dg.MetadataValue.md(str(v)),
        "json": dg.MetadataValue.json,  # type: ignore[dict-item]
        "int": lambda v: dg.MetadataValue.int(int(v)),  # type: ignore[arg-type]
        "float": lambda v: dg.MetadataValue.float(float(v)),  # type: ignore[arg-type]
        "url": lambda v: dg.MetadataValue.url(str(v)),
    }
    out = {}
    for name, value in values.items():
        kind = str(value["type"])
        if kind not in build:
            raise ValueError(f"metadata {name!r}: type {kind!r} is not one of {sorted(build)}")
        out[name] = build[kind](value["raw_value"])
    return out


def report_events(report: Report) -> TrainingEvents:
    yield dg.MaterializeResult(metadata=dagster_metadata(report.metadata))
    for check in report.checks:
        yield dg.AssetCheckResult(
            check_name=check.name,
            passed=check.passed,
            description=check.description,
            metadata=dagster_metadata(check.metadata),
        )


def pipes_events(context: dg.AssetExecutionContext, results: Sequence[object]) -> TrainingEvents:
    """Results reported through Pipes, with each check's description back in its field. A job
    that ended without reporting a check the step selected is an error naming it, not a
    materialization with nothing checked."""
    expected = {key.name for key in context.selected_asset_check_keys}
    reported = {r.check_name for r in results if isinstance(r, dg.AssetCheckResult)}
    if expected - reported:
        raise dg.Failure(
            f"The training job ended without reporting the check(s) {sorted(expected - reported)}"
            " (it reported " + (", ".join(sorted(reported)) or "none") + "); its log above says "
            "where it stopped."
        )
    for result in results:
        if isinstance(result, dg.AssetCheckResult):
            metadata = dict(result.metadata or {})
            description = metadata.pop("description", None)
            yield dg.AssetCheckResult(
                asset_key=result.asset_key,
                check_name=result.check_name,
                passed=result.passed,
                severity=result.severity,
                description=getattr(description, "value", None),
                metadata=metadata,
            )
        elif isinstance(result, dg.MaterializeResult):
            yield result
        else:
            raise TypeError(f"unexpected Pipes result {type(result).__name__}")


class TrainingLauncher(dg.ConfigurableResource, ABC):
    @abstractmethod
    def launch(
        self,
        context: dg.AssetExecutionContext,
        request: TrainingRequest,
        tracking: Tracking,
        read: Callable[[], pd.DataFrame],
    ) -> TrainingEvents:
        """Train; yields the materialization and the check results. ``read`` gives the
        training set in this process (the in-process launcher uses it; remote ones read
        ``request.source`` where they run)."""

    def where(self) -> str:
        """Where the training step runs, for the materialization's metadata."""
        return type(self).__name__


class InProcessTraining(TrainingLauncher):
    """In the step's own process."""

    def launch(self, context, request, tracking, read) -> TrainingEvents:
        outcome = train(read(), request, tracking, log=context.log.info)
        yield from report_events(outcome.report())

    def where(self) -> str:
        return "in process"


def _extras(request: TrainingRequest, tracking: Tracking) -> dict[str, object]:
    return {"training": request.to_json(), "tracking": tracking.to_json()}


class SubprocessTraining(TrainingLauncher):
    """``ml_assets/pipes/train_model.py`` in a subprocess of this Python, through Pipes."""

    python: str | None = Field(None, description="the interpreter; default: this process's")

    def launch(self, context, request, tracking, read) -> TrainingEvents:
        client = dg.PipesSubprocessClient(cwd=str(SCRIPT.parent))
        invocation = client.run(
            context=context,
            command=[self.python or sys.executable, str(SCRIPT)],
            extras=_extras(request, tracking),
        )
        yield from pipes_events(context, invocation.get_results())

    def where(self) -> str:
        return "subprocess (Dagster Pipes)"


def package_zip() -> bytes:
    """This package's Python sources as a zip (``ml_assets/...``), deterministic for the same
    files, for ``sys.path`` on the job."""
    root = Path(ml_assets.__file__).parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*.py")):
            info = zipfile.ZipInfo(
                str(Path("ml_assets") / path.relative_to(root)), (1980, 1, 1, 0, 0, 0)
            )
            archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def remote_libraries() -> list[str]:
    return [f"{dist}=={importlib_metadata.version(dist)}" for dist in REMOTE_DISTRIBUTIONS]


class DatabricksTraining(TrainingLauncher):
    """The training script as a Databricks job through Pipes. Credentials as the other
    Databricks resources (``host`` + ``token`` bound as ``dg.EnvVar``, or ``profile``);
    ``cluster_id`` runs it on that cluster, unset on serverless jobs compute."""

    host: str | None = Field(None, description="https://<workspace>; default: the SDK's")
    token: str | None = Field(None, description="bind as dg.EnvVar('DATABRICKS_TOKEN')")
    profile: str | None = Field(None, description="a ~/.databrickscfg profile")
    cluster_id: str | None = Field(None, description="an all-purpose cluster; None: serverless")
    volume: str = Field(
        description="a Unity Catalog volume for the code and the Pipes files, "
        "/Volumes/<catalog>/<schema>/<volume>"
    )
    poll_interval_seconds: float = Field(5.0, gt=0)
    http_timeout_seconds: int = Field(30, ge=1)
    retry_timeout_seconds: int = Field(60, ge=1)

    def workspace(self):
        return workspace_client(
            self.host,
            self.token,
            self.profile,
            http_timeout_seconds=self.http_timeout_seconds,
            retry_timeout_seconds=self.retry_timeout_seconds,
        )

    def upload_code(self, files_api) -> tuple[str, str]:
        """The script and the package zip under ``<volume>/code/<hash>/``; returns their paths."""
        script, package = SCRIPT.read_bytes(), package_zip()
        digest = hashlib.sha256(script + package).hexdigest()[:16]
        directory = f"{self.volume.rstrip('/')}/code/{digest}"
        files_api.create_directory(directory)
        paths = (f"{directory}/train_model.py", f"{directory}/ml_assets.zip")
        for path, data in zip(paths, (script, package), strict=True):
            files_api.upload(path, io.BytesIO(data), overwrite=True)
        return paths

    def task(self, script: str, package: str):
        from databricks.sdk.service import compute, jobs

        python = jobs.SparkPythonTask(
            python_file=script, parameters=["--code", package, "--pipes-io", "volumes"]
        )
        if self.cluster_id is None:
            return jobs.SubmitTask(
                task_key="train_model", spark_python_task=python, environment_key="ml_assets"
            ), {
                "run_name": "ml_assets train_model",
                "environments": [
                    jobs.JobEnvironment(
                        environment_key="ml_assets",
                        spec=compute.Environment(
                            environment_version="2", dependencies=remote_libraries()
                        ),
                    )
                ],
            }
        libraries = [
            compute.Library(pypi=compute.PythonPyPiLibrary(package=p)) for p in remote_libraries()
        ]
        return jobs.SubmitTask(
            task_key="train_model",
            spark_python_task=python,
            existing_cluster_id=self.cluster_id,
            libraries=libraries,
        ), {"run_name": "ml_assets train_model"}

    def client(self, workspace):
        try:
            import dagster_databricks  # noqa: F401
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "DatabricksTraining needs dagster-databricks, which the Databricks environment "
                "has: make setup DEPLOYMENT=databricks (then use .venv-databricks)."
            ) from None
        from dagster_databricks.pipes import (
            PipesDatabricksClient,
            PipesDatabricksServerlessClient,
            PipesUnityCatalogVolumesContextInjector,
            PipesUnityCatalogVolumesMessageReader,
        )

        io_ = {
            "context_injector": PipesUnityCatalogVolumesContextInjector(
                client=workspace, volume_path=self.volume
            ),
            "message_reader": PipesUnityCatalogVolumesMessageReader(
                client=workspace,
                volume_path=self.volume,
                interval=min(10.0, self.poll_interval_seconds),
            ),
        }
        if self.cluster_id is None:
            return PipesDatabricksServerlessClient(
                client=workspace,
                volume_path=self.volume,
                poll_interval_seconds=self.poll_interval_seconds,
                **io_,
            )
        return PipesDatabricksClient(
            client=workspace, poll_interval_seconds=self.poll_interval_seconds, **io_
        )

    def launch(self, context, request, tracking, read) -> TrainingEvents:
        from databricks.sdk.service import files

        workspace = self.workspace()
        with calling_workspace(
            self.host,
            self.profile,
            self.retry_timeout_seconds,
            needs=f"a token that may write to {self.volume} and submit job runs",
            setting="the training launcher's host",
        ):
            script, package = self.upload_code(files.FilesAPI(workspace.api_client))
        task, submit_args = self.task(script, package)
        context.log.info(f"training job: {script} with {package} on {self.where()}")
        invocation = self.client(workspace).run(
            context=context,
            extras=_extras(request, on_workspace(tracking)),
            task=task,
            submit_args=submit_args,
        )
        yield from pipes_events(context, invocation.get_results())

    def where(self) -> str:
        compute = f"cluster {self.cluster_id}" if self.cluster_id else "serverless jobs compute"
        return f"Databricks job on {compute} (Dagster Pipes)"


def on_workspace(tracking: Tracking) -> Tracking:
    """Tracking as a job inside the workspace sees it: ``databricks`` with the job's own
    credentials (a profile exists only on the orchestrator's machine)."""
    if tracking.tracking_uri.startswith("databricks"):
        return Tracking("databricks", tracking.experiment_name, tracking.artifact_location)
    return tracking
