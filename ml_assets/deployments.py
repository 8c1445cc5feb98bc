"""The one place where the environment selects behaviour.

``ML_ASSETS_DEPLOYMENT`` (default ``local``) picks the row of the deployment table;
``ML_ASSETS_HOME`` is where all local state lives; ``ML_ASSETS_ENGINE`` picks the engine lane
(``sail``, the embedded default; ``sail-cluster``; ``spark``, a local Apache Spark cluster with
Delta whose state and jars live under ``ML_ASSETS_ENGINES_DIR``, default ``.engines/`` in the
repository, on ports ``ML_ASSETS_SPARK_CONNECT_PORT``, ``..._MASTER_PORT``,
``..._MASTER_UI_PORT``, its jars from ``ML_ASSETS_MAVEN_REPOSITORY``);
``ML_ASSETS_SPARK_REMOTE`` points the local deployment at an external Spark Connect server
(whose engine ``ML_ASSETS_ENGINE`` names: ``spark`` or ``sail``);
``ML_ASSETS_ONLINE_STORE_URL`` points the online store at PostgreSQL (default: SQLite under
the home; bound as ``dg.EnvVar`` so its password never reaches Dagster's storage);
``ML_ASSETS_SCALE`` sizes the demo source;
``ML_ASSETS_TRAINING`` says where the training step runs: ``in_process`` (default) or
``subprocess`` (the Pipes script, ``ml_assets/pipes/train_model.py``);
``ML_ASSETS_SERVING_TOKEN``, ``ML_ASSETS_SERVING_CLOCK`` and ``ML_ASSETS_SERVING_MAX_BODY_BYTES``
configure the gateway.
``ML_ASSETS_INJECT_DRIFT_FROM`` (a date) and ``ML_ASSETS_INJECT_LEAKAGE=1`` make the demo source
drift from that date, or leak the future through backdated plan downgrades (``make check
CHECK_ARGS="--inject drift"`` uses them to show the checks failing).

``ML_ASSETS_DEPLOYMENT=databricks`` binds the same definitions to a workspace
(``DatabricksSettings``: ``ML_ASSETS_CATALOG``, ``DATABRICKS_HOST``/``DATABRICKS_TOKEN`` or
``DATABRICKS_CONFIG_PROFILE``, ``DATABRICKS_CLUSTER_ID`` or serverless,
``ML_ASSETS_ONLINE_STORE_URL`` for Lakebase, ``ML_ASSETS_PIPES_VOLUME`` for the training
job's code and Pipes files, ``ML_ASSETS_LAKEHOUSE_MONITORING=0`` to leave Lakehouse Monitoring
out, ...):
every problem with those settings is reported at load, in one error; nothing is contacted
until a resource is first used, and the token is bound as ``dg.EnvVar`` (never stored).
Asset modules never read the environment: ``build_resources`` binds everything here, once.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg

from ml_assets.engines.jars import MAVEN_CENTRAL
from ml_assets.engines.spark_cluster import SparkClusterConfig
from ml_assets.lib.engines import UnknownEngineError, engine_traits
from ml_assets.lib.links import LOCAL_DAGSTER_UI, LOCAL_MLFLOW_UI, check_base_url
from ml_assets.lib.redact import redact_url
from ml_assets.lib.source import SCALES
from ml_assets.resources.lakehouse import CatalogDeltaLakehouse, LocalDeltaLakehouse
from ml_assets.resources.lakehouse_monitoring import DatabricksLakehouseMonitoring
from ml_assets.resources.landing import DemoSource, LandingZone
from ml_assets.resources.links import UiLinks
from ml_assets.resources.mlflow import DatabricksMlflow, LocalMlflow
from ml_assets.resources.online_store import SqlOnlineStore
from ml_assets.resources.registry import LocalModelRegistry, UnityCatalogModelRegistry
from ml_assets.resources.reports import VOLUME_PATH, DatabricksVolumeReports, LocalReports
from ml_assets.resources.serving import DatabricksEndpointDeployer, LocalEndpointDeployer
from ml_assets.resources.spark import (
    DatabricksConnectSpark,
    EmbeddedSailSpark,
    SparkConnectRemote,
    SparkResource,
)
from ml_assets.resources.training import (
    DatabricksTraining,
    InProcessTraining,
    SubprocessTraining,
    TrainingLauncher,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = ("local", "databricks")
TRAINING_LAUNCHERS = ("in_process", "subprocess")  # the local rows; databricks: a job
LAKEHOUSE_MONITORING_ASSETS = "/Workspace/Shared/ml_assets/lakehouse_monitoring"  # dashboards


class DeploymentError(ValueError):
    """An environment that names no known deployment or an invalid setting."""


_UC_NAME = re.compile(r"[a-z0-9_]{1,255}")
_CLUSTER_ID = re.compile(r"[0-9]{4}-[0-9]{6}-[a-z0-9]{8}")
TOKEN_ENV = "DATABRICKS_TOKEN"
SPARK_REMOTE_ENV = "ML_ASSETS_SPARK_REMOTE"


@dataclass(frozen=True)
class DatabricksSettings:
    """The ``databricks`` row: a workspace, a Unity Catalog catalog (one schema per stage),
    Spark through Databricks Connect (a cluster, or serverless) or a Spark Connect string."""

    catalog: str
    host: str | None  # None: from the profile
    profile: str | None
    has_token: bool  # DATABRICKS_TOKEN is set (bound as dg.EnvVar, never read here)
    cluster_id: str | None  # None: serverless
    spark_remote_set: bool  # ML_ASSETS_SPARK_REMOTE, a Spark Connect string (bound as EnvVar)
    experiment: str
    landing_volume: str
    reports_volume: str
    inference_tables: bool
    pipes_volume: str = ""  # the training job's code and Pipes files
    lakehouse_monitoring: bool = True  # an inference-log monitor on the batch predictions


def _volume_problem(name: str, value: str) -> str | None:
    if VOLUME_PATH.match(value):
        return None
    return (
        f"{name}={value!r}: expected a Unity Catalog volume path "
        "/Volumes/<catalog>/<schema>/<volume>[/dir], lower-case names."
    )


def databricks_settings(env: Mapping[str, str]) -> DatabricksSettings:
    """Every problem with the Databricks settings at once, in one ``DeploymentError``."""
    problems: list[str] = []
    catalog = env.get("ML_ASSETS_CATALOG") or ""
    if not catalog:
        problems.append(
            "ML_ASSETS_CATALOG is not set: the Unity Catalog catalog that holds every table "
            "(one schema per stage: raw, features, training_sets, ...) and model, e.g. ml_dev."
        )
    elif not _UC_NAME.fullmatch(catalog):
        problems.append(
            f"ML_ASSETS_CATALOG={catalog!r}: a catalog name is lower-case letters, digits and "
            "underscores (e.g. ml_dev)."
        )
    host = env.get("DATABRICKS_HOST") or None
    profile = env.get("DATABRICKS_CONFIG_PROFILE") or None
    has_token = bool(env.get(TOKEN_ENV))
    if host is not None:
        parsed = urlparse(host)
        local = parsed.hostname in ("127.0.0.1", "localhost")
        if (
            parsed.scheme not in ("https", "http")
            or not parsed.hostname
            or (parsed.scheme == "http" and not local)
            or parsed.path not in ("", "/")
        ):
            problems.append(
                f"DATABRICKS_HOST={host!r}: expected the workspace URL, "
                "https://<workspace>.cloud.databricks.com (no path)."
            )
    if profile is None and (host is None or not has_token):
        missing = [n for n, v in (("DATABRICKS_HOST", host), (TOKEN_ENV, has_token)) if not v]
        problems.append(
            f"{' and '.join(missing)} not set: set DATABRICKS_HOST and DATABRICKS_TOKEN (a "
            "personal access token or a service principal's), or DATABRICKS_CONFIG_PROFILE to "
            "a profile of ~/.databrickscfg."
        )
    cluster_id = env.get("DATABRICKS_CLUSTER_ID") or None
    if cluster_id is not None and not _CLUSTER_ID.fullmatch(cluster_id):
        problems.append(
            f"DATABRICKS_CLUSTER_ID={cluster_id!r}: expected a cluster id like "
            "0123-456789-abcdefgh (unset it for serverless compute)."
        )
    remote = env.get(SPARK_REMOTE_ENV) or None
    if remote is not None and not remote.startswith("sc://"):
        problems.append(
            f"{SPARK_REMOTE_ENV} is not a Spark Connect string: expected "
            "'sc://<host>:443/;token=...;x-databricks-cluster-id=...' (its value is not shown: "
            "it may hold a token)."
        )
    if remote is not None and cluster_id is not None:
        problems.append(
            f"Both {SPARK_REMOTE_ENV} and DATABRICKS_CLUSTER_ID are set: pick one way to Spark."
        )
    engine = env.get("ML_ASSETS_ENGINE")
    if engine:
        problems.append(
            f"ML_ASSETS_ENGINE={engine!r} picks a local engine lane; the databricks deployment "
            "uses Databricks Connect (DATABRICKS_CLUSTER_ID or serverless): unset it."
        )
    online = env.get("ML_ASSETS_ONLINE_STORE_URL") or ""
    if not online.startswith("postgresql"):
        problems.append(
            "ML_ASSETS_ONLINE_STORE_URL must be the Lakebase (PostgreSQL) database, "
            "'postgresql+psycopg://<user>:<password>@<instance>.database.cloud.databricks.com"
            ":5432/<db>?sslmode=require'; found "
            + (f"a {online.partition(':')[0]!r} URL (not shown)." if online else "nothing.")
        )
    experiment = env.get("ML_ASSETS_EXPERIMENT") or "/Shared/ml_assets/churn"
    if not experiment.startswith("/") or "//" in experiment:
        problems.append(
            f"ML_ASSETS_EXPERIMENT={experiment!r}: a workspace path, e.g. /Shared/ml_assets/churn."
        )
    base = catalog if _UC_NAME.fullmatch(catalog) else "catalog"
    landing = env.get("ML_ASSETS_LANDING_VOLUME") or f"/Volumes/{base}/landing/files"
    reports = env.get("ML_ASSETS_REPORTS_VOLUME") or f"/Volumes/{base}/monitoring/reports"
    pipes = env.get("ML_ASSETS_PIPES_VOLUME") or f"/Volumes/{base}/ml_assets/pipes"
    for name, value in (
        ("ML_ASSETS_LANDING_VOLUME", landing),
        ("ML_ASSETS_REPORTS_VOLUME", reports),
        ("ML_ASSETS_PIPES_VOLUME", pipes),
    ):
        problem = _volume_problem(name, value)
        if problem:
            problems.append(problem)
    capture = env.get("ML_ASSETS_INFERENCE_TABLES", "1")
    if capture not in ("0", "1"):
        problems.append(f"ML_ASSETS_INFERENCE_TABLES={capture!r}; expected 1 (default) or 0.")
    monitoring = env.get("ML_ASSETS_LAKEHOUSE_MONITORING", "1")
    if monitoring not in ("0", "1"):
        problems.append(
            f"ML_ASSETS_LAKEHOUSE_MONITORING={monitoring!r}; expected 1 (default) or 0."
        )
    training = env.get("ML_ASSETS_TRAINING")
    if training:
        problems.append(
            f"ML_ASSETS_TRAINING={training!r} picks a local training launcher; the databricks "
            "deployment trains in a Databricks job through Dagster Pipes: unset it."
        )
    if problems:
        raise DeploymentError(
            f"The databricks deployment has {len(problems)} problem(s) with its settings:\n- "
            + "\n- ".join(problems)
        )
    return DatabricksSettings(
        catalog=catalog,
        host=host.rstrip("/") if host else None,
        profile=profile,
        has_token=has_token,
        cluster_id=cluster_id,
        spark_remote_set=remote is not None,
        experiment=experiment,
        landing_volume=landing,
        reports_volume=reports,
        inference_tables=capture == "1",
        pipes_volume=pipes,
        lakehouse_monitoring=monitoring == "1",
    )


@dataclass(frozen=True)
class Settings:
    deployment: str
    home: Path
    scale: str
    engine: str = "sail"  # the engine lane: sail, sail-cluster or spark
    spark_remote: str | None = None
    engines_dir: Path | None = None  # the spark lane's state and jars (default: .engines/)
    spark_ports: tuple[int, int, int] = (15102, 7177, 8190)  # connect, master, master UI
    maven_repository: str = MAVEN_CENTRAL
    # secrets: left out of the repr, so printing the settings shows neither
    online_store_url: str | None = field(default=None, repr=False)  # default: SQLite under home
    serving_token: str | None = field(default=None, repr=False)  # the gateway's bearer token
    serving_clock: str = "data"  # request time: "data" (newest feature time) or "wall"
    serving_max_body_bytes: int = 4 * 1024 * 1024  # larger request bodies are refused (413)
    serving_inference_log: bool = True  # the gateway logs every answer (inference table)
    inject_drift_from: str | None = None  # ISO date; demo source only
    inject_leakage: bool = False  # demo source only
    training: str = "in_process"  # where the training step runs (TRAINING_LAUNCHERS)
    databricks: DatabricksSettings | None = None  # the databricks deployment's settings
    # the first daily partition of a source other than the demo's (open-ended: to today);
    # unset, the partitions are the demo source's calendar at the scale
    partitions_start: dt.date | None = None
    # the UIs links point at (ML_ASSETS_MLFLOW_UI_URL on Databricks: default the workspace)
    mlflow_ui_url: str | None = LOCAL_MLFLOW_UI
    dagster_ui_url: str = LOCAL_DAGSTER_UI

    @property
    def calendar(self) -> tuple[dt.date, dt.date | None]:
        """First and last day (None: up to today) of the daily partitions."""
        if self.partitions_start is not None:
            return self.partitions_start, None
        source = SCALES[self.scale]
        return source.start_date, source.end_date

    @property
    def online_store(self) -> str:
        return self.online_store_url or f"sqlite:///{self.home / 'online.db'}"

    @property
    def spark_cluster(self) -> SparkClusterConfig:
        """The local Apache Spark cluster of the ``spark`` lane."""
        base = self.engines_dir or REPO_ROOT / ".engines"
        connect, master, master_ui = self.spark_ports
        return SparkClusterConfig(
            state_dir=base / "spark",
            jar_cache=base / "jars",
            connect_port=connect,
            master_port=master,
            master_ui_port=master_ui,
            maven_repository=self.maven_repository,
        )

    @property
    def warehouse_dir(self) -> Path:
        return self.home / "warehouse"

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    @property
    def serving_dir(self) -> Path:
        return self.home / "serving"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"


def current_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    deployment = env.get("ML_ASSETS_DEPLOYMENT", "local")
    if deployment not in DEPLOYMENTS:
        raise DeploymentError(
            f"ML_ASSETS_DEPLOYMENT={deployment!r} is not a deployment; expected one of "
            f"{DEPLOYMENTS}."
        )
    databricks = databricks_settings(env) if deployment == "databricks" else None
    scale = env.get("ML_ASSETS_SCALE", "demo")
    if scale not in SCALES:
        raise DeploymentError(f"ML_ASSETS_SCALE={scale!r}; expected one of {list(SCALES)}.")
    engine = (env.get("ML_ASSETS_ENGINE") or "sail") if databricks is None else "sail"
    try:
        engine_traits(engine, lanes_only=True)
    except UnknownEngineError as exc:
        raise DeploymentError(str(exc)) from None
    ports = []
    for name, default in (("CONNECT", 15102), ("MASTER", 7177), ("MASTER_UI", 8190)):
        value = env.get(f"ML_ASSETS_SPARK_{name}_PORT") or str(default)
        if not value.isdigit() or not 1024 <= int(value) <= 65535:
            raise DeploymentError(
                f"ML_ASSETS_SPARK_{name}_PORT={value!r}; expected a port number from 1024 to "
                f"65535 (default {default})."
            )
        ports.append(int(value))
    if len(set(ports)) != len(ports):
        raise DeploymentError(
            f"The spark lane's ports must differ; found connect, master, master UI = {ports}."
        )
    engines_dir = env.get("ML_ASSETS_ENGINES_DIR") or None
    remote = (env.get("ML_ASSETS_SPARK_REMOTE") or None) if databricks is None else None
    if remote is not None and not remote.startswith("sc://"):
        raise DeploymentError(
            f"ML_ASSETS_SPARK_REMOTE={remote!r}; expected a Spark Connect address 'sc://host:port'."
        )
    home = Path(env.get("ML_ASSETS_HOME") or REPO_ROOT / ".ml_assets").expanduser().resolve()
    online = env.get("ML_ASSETS_ONLINE_STORE_URL") or None
    if online is not None and not online.startswith(("sqlite:", "postgresql")):
        raise DeploymentError(
            f"ML_ASSETS_ONLINE_STORE_URL={redact_url(online)!r}; expected a SQLAlchemy URL, "
            "'sqlite:///path/online.db' or 'postgresql+psycopg://user@host:port/db'."
        )
    clock = env.get("ML_ASSETS_SERVING_CLOCK", "data")
    if clock not in ("data", "wall"):
        raise DeploymentError(
            f"ML_ASSETS_SERVING_CLOCK={clock!r}; expected 'data' (score at the newest feature "
            "time, for the replayed demo data) or 'wall' (score at the current time)."
        )
    max_body = env.get("ML_ASSETS_SERVING_MAX_BODY_BYTES", str(4 * 1024 * 1024))
    if not max_body.isdigit() or int(max_body) < 1024:
        raise DeploymentError(
            f"ML_ASSETS_SERVING_MAX_BODY_BYTES={max_body!r}; expected a number of bytes, at "
            "least 1024 (default 4194304, 4 MiB)."
        )
    drift_from = env.get("ML_ASSETS_INJECT_DRIFT_FROM") or None
    if drift_from is not None:
        try:
            dt.date.fromisoformat(drift_from)
        except ValueError:
            raise DeploymentError(
                f"ML_ASSETS_INJECT_DRIFT_FROM={drift_from!r}; expected a date, e.g. 2026-02-20."
            ) from None
    training = (env.get("ML_ASSETS_TRAINING") or "in_process") if databricks is None else "job"
    if databricks is None and training not in TRAINING_LAUNCHERS:
        raise DeploymentError(
            f"ML_ASSETS_TRAINING={training!r}; expected one of {TRAINING_LAUNCHERS} (in_process: "
            "the Dagster step's own process; subprocess: the Pipes script in a subprocess)."
        )
    partitions_start = env.get("ML_ASSETS_PARTITIONS_START") or None
    try:
        start = None if partitions_start is None else dt.date.fromisoformat(partitions_start)
    except ValueError:
        raise DeploymentError(
            f"ML_ASSETS_PARTITIONS_START={partitions_start!r}; expected the first day of your "
            "source's data as an ISO date, e.g. 2025-06-01 (unset: the demo calendar)."
        ) from None
    default_mlflow_ui = LOCAL_MLFLOW_UI if databricks is None else databricks.host
    try:
        mlflow_ui = env.get("ML_ASSETS_MLFLOW_UI_URL") or default_mlflow_ui
        mlflow_ui = (
            None if mlflow_ui is None else check_base_url(mlflow_ui, "ML_ASSETS_MLFLOW_UI_URL")
        )
        dagster_ui = check_base_url(
            env.get("ML_ASSETS_DAGSTER_UI_URL") or LOCAL_DAGSTER_UI, "ML_ASSETS_DAGSTER_UI_URL"
        )
    except ValueError as exc:
        raise DeploymentError(str(exc)) from None
    leakage = env.get("ML_ASSETS_INJECT_LEAKAGE", "0")
    if leakage not in ("0", "1"):
        raise DeploymentError(f"ML_ASSETS_INJECT_LEAKAGE={leakage!r}; expected 0 or 1.")
    inference_log = env.get("ML_ASSETS_SERVING_INFERENCE_LOG", "1")
    if inference_log not in ("0", "1"):
        raise DeploymentError(
            f"ML_ASSETS_SERVING_INFERENCE_LOG={inference_log!r}; expected 1 (log every answer "
            "of the gateway) or 0 (log nothing)."
        )
    return Settings(
        deployment=deployment,
        home=home,
        scale=scale,
        engine=engine,
        spark_remote=remote,
        engines_dir=Path(engines_dir).expanduser().resolve() if engines_dir else None,
        spark_ports=(ports[0], ports[1], ports[2]),
        maven_repository=env.get("ML_ASSETS_MAVEN_REPOSITORY") or MAVEN_CENTRAL,
        online_store_url=online,
        serving_token=env.get("ML_ASSETS_SERVING_TOKEN") or None,
        serving_clock=clock,
        serving_max_body_bytes=int(max_body),
        serving_inference_log=inference_log == "1",
        inject_drift_from=drift_from,
        inject_leakage=leakage == "1",
        partitions_start=start,
        mlflow_ui_url=mlflow_ui,
        dagster_ui_url=dagster_ui,
        training=training,
        databricks=databricks,
    )


ONLINE_STORE_URL_ENV = "ML_ASSETS_ONLINE_STORE_URL"


def _env_var(name: str, value: str | None = None) -> dg.EnvVar:
    """A secret bound by name: Dagster resolves it when a run starts and stores the variable's
    name in its run storage and UI, never the value. So this process's environment must hold
    it (and hold ``value``, when the settings were read from another mapping)."""
    found = os.environ.get(name)
    if not found or (value is not None and found != value):
        raise DeploymentError(
            f"The value the settings read is not the value of {name} in this process's "
            "environment (unset or different). It is bound from that variable by name so that "
            "its value is never stored: set it there."
        )
    return dg.EnvVar(name)


def _online_store(settings: Settings) -> SqlOnlineStore:
    """SQLite under the home, or the URL of ``ML_ASSETS_ONLINE_STORE_URL`` (PostgreSQL,
    Lakebase), which may carry a password: bound by name."""
    if settings.online_store_url is None:
        return SqlOnlineStore(database_url=settings.online_store)  # a file under home
    return SqlOnlineStore(database_url=_env_var(ONLINE_STORE_URL_ENV, settings.online_store_url))


def _demo_source(settings: Settings) -> DemoSource:
    return DemoSource(
        scale=settings.scale,
        drift_from=settings.inject_drift_from,
        backdated_downgrades=settings.inject_leakage,
    )


def spark_resource(settings: Settings) -> SparkResource:
    """The engine lane: an external server, the embedded Sail server alone or as a local
    cluster, or the local Apache Spark cluster (started by ``make spark-up`` or ``make check
    ENGINE=spark``; ``ml_assets.engines.spark_cluster``)."""
    if settings.spark_remote:
        return SparkConnectRemote(remote=settings.spark_remote, engine=settings.engine)
    if settings.engine == "spark":
        return SparkConnectRemote(remote=settings.spark_cluster.remote, engine="spark")
    if settings.engine == "sail-cluster":
        return EmbeddedSailSpark(mode="local-cluster", workers=2)
    return EmbeddedSailSpark()


def build_databricks_resources(settings: Settings) -> dict[str, object]:
    """The ``databricks`` row of the deployment table. Builds no client: every resource
    contacts the workspace on first use only."""
    db = settings.databricks
    assert db is not None
    token = _env_var(TOKEN_ENV) if db.has_token and db.profile is None else None
    credentials = {"host": db.host, "token": token, "profile": db.profile}
    if db.spark_remote_set:
        spark: SparkResource = SparkConnectRemote(
            remote=_env_var(SPARK_REMOTE_ENV), engine="databricks"
        )
    else:
        spark = DatabricksConnectSpark(**credentials, cluster_id=db.cluster_id)
    tracking = DatabricksMlflow(experiment_name=db.experiment, profile=db.profile)
    resources: dict[str, object] = {
        "spark": spark,
        "lakehouse": CatalogDeltaLakehouse(catalog=db.catalog, spark=spark),
        "landing": LandingZone(root=db.landing_volume, spark=spark),
        "demo_source": _demo_source(settings),
        "mlflow_tracking": tracking,
        "model_registry": UnityCatalogModelRegistry(tracking=tracking, catalog=db.catalog),
        "online_store": _online_store(settings),
        "endpoint_deployer": DatabricksEndpointDeployer(
            **credentials,
            inference_table_catalog=db.catalog if db.inference_tables else None,
            inference_table_schema="serving" if db.inference_tables else None,
        ),
        "reports": DatabricksVolumeReports(volume_path=db.reports_volume, **credentials),
        "training_launcher": DatabricksTraining(
            **credentials, cluster_id=db.cluster_id, volume=db.pipes_volume
        ),
        "ui_links": UiLinks(
            mlflow_url=settings.mlflow_ui_url,
            mlflow_kind="databricks" if settings.mlflow_ui_url == db.host else "oss",
            dagster_url=settings.dagster_ui_url,
        ),
    }
    if db.lakehouse_monitoring:
        resources["lakehouse_monitoring"] = DatabricksLakehouseMonitoring(
            **credentials,
            catalog=db.catalog,
            output_schema=f"{db.catalog}.monitoring",
            assets_dir=LAKEHOUSE_MONITORING_ASSETS,
        )
    return resources


def build_resources(settings: Settings) -> dict[str, object]:
    """The deployment table: resource key -> implementation for this deployment."""
    if settings.deployment == "databricks":
        return build_databricks_resources(settings)
    spark = spark_resource(settings)
    tracking = LocalMlflow(home=str(settings.home))
    return {
        "spark": spark,
        "lakehouse": LocalDeltaLakehouse(warehouse_dir=str(settings.warehouse_dir), spark=spark),
        "landing": LandingZone(root=str(settings.landing_dir), spark=spark),
        "demo_source": _demo_source(settings),
        "mlflow_tracking": tracking,
        "model_registry": LocalModelRegistry(tracking=tracking),
        "online_store": _online_store(settings),
        "endpoint_deployer": LocalEndpointDeployer(directory=str(settings.serving_dir)),
        "reports": LocalReports(directory=str(settings.reports_dir)),
        "training_launcher": _training_launcher(settings),
        "ui_links": UiLinks(mlflow_url=settings.mlflow_ui_url, dagster_url=settings.dagster_ui_url),
    }


def _training_launcher(settings: Settings) -> TrainingLauncher:
    if settings.training == "subprocess":
        return SubprocessTraining()
    return InProcessTraining()
