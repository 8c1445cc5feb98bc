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
``ML_ASSETS_SERVING_TOKEN``, ``ML_ASSETS_SERVING_CLOCK`` and ``ML_ASSETS_SERVING_MAX_BODY_BYTES``
configure the gateway.
``ML_ASSETS_INJECT_DRIFT_FROM`` (a date) and ``ML_ASSETS_INJECT_LEAKAGE=1`` make the demo source
drift from that date, or leak the future through backdated plan downgrades (``make check
CHECK_ARGS="--inject drift"`` uses them to show the checks failing).
Asset modules never read the environment: ``build_resources`` binds everything here, once.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from ml_assets.engines.jars import MAVEN_CENTRAL
from ml_assets.engines.spark_cluster import SparkClusterConfig
from ml_assets.lib.engines import UnknownEngineError, engine_traits
from ml_assets.lib.redact import redact_url
from ml_assets.lib.source import SCALES
from ml_assets.resources.lakehouse import LocalDeltaLakehouse
from ml_assets.resources.landing import DemoSource, LandingZone
from ml_assets.resources.mlflow import LocalMlflow
from ml_assets.resources.online_store import SqlOnlineStore
from ml_assets.resources.registry import LocalModelRegistry
from ml_assets.resources.reports import LocalReports
from ml_assets.resources.serving import LocalEndpointDeployer
from ml_assets.resources.spark import EmbeddedSailSpark, SparkConnectRemote, SparkResource

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = ("local",)


class DeploymentError(ValueError):
    """An environment that names no known deployment or an invalid setting."""


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
    inject_drift_from: str | None = None  # ISO date; demo source only
    inject_leakage: bool = False  # demo source only

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
            f"{DEPLOYMENTS}. (The Databricks deployment is not available yet.)"
        )
    scale = env.get("ML_ASSETS_SCALE", "demo")
    if scale not in SCALES:
        raise DeploymentError(f"ML_ASSETS_SCALE={scale!r}; expected one of {list(SCALES)}.")
    engine = env.get("ML_ASSETS_ENGINE") or "sail"
    try:
        engine_traits(engine)
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
    remote = env.get("ML_ASSETS_SPARK_REMOTE") or None
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
    leakage = env.get("ML_ASSETS_INJECT_LEAKAGE", "0")
    if leakage not in ("0", "1"):
        raise DeploymentError(f"ML_ASSETS_INJECT_LEAKAGE={leakage!r}; expected 0 or 1.")
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
        inject_drift_from=drift_from,
        inject_leakage=leakage == "1",
    )


ONLINE_STORE_URL_ENV = "ML_ASSETS_ONLINE_STORE_URL"


def _online_store(settings: Settings) -> SqlOnlineStore:
    """A URL given in the environment may carry a password: it is bound as ``dg.EnvVar``, so
    Dagster stores the variable's name in its run storage and UI, never the value."""
    if settings.online_store_url is None:
        return SqlOnlineStore(database_url=settings.online_store)  # a file under home
    if os.environ.get(ONLINE_STORE_URL_ENV) != settings.online_store_url:
        raise DeploymentError(
            f"The online store URL {redact_url(settings.online_store_url)!r} is not the value "
            f"of {ONLINE_STORE_URL_ENV} in this process's environment. It is bound from that "
            "variable so that its password is never stored: set it there."
        )
    return SqlOnlineStore(database_url=dg.EnvVar(ONLINE_STORE_URL_ENV))


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


def build_resources(settings: Settings) -> dict[str, object]:
    """The deployment table: resource key -> implementation for this deployment."""
    spark = spark_resource(settings)
    tracking = LocalMlflow(home=str(settings.home))
    return {
        "spark": spark,
        "lakehouse": LocalDeltaLakehouse(warehouse_dir=str(settings.warehouse_dir), spark=spark),
        "landing": LandingZone(root=str(settings.landing_dir), spark=spark),
        "demo_source": DemoSource(
            scale=settings.scale,
            drift_from=settings.inject_drift_from,
            backdated_downgrades=settings.inject_leakage,
        ),
        "mlflow_tracking": tracking,
        "model_registry": LocalModelRegistry(tracking=tracking),
        "online_store": _online_store(settings),
        "endpoint_deployer": LocalEndpointDeployer(directory=str(settings.serving_dir)),
        "reports": LocalReports(directory=str(settings.reports_dir)),
    }
