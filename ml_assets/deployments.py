"""The one place where the environment selects behaviour.

``ML_ASSETS_DEPLOYMENT`` (default ``local``) picks the row of the deployment table;
``ML_ASSETS_HOME`` is where all local state lives; ``ML_ASSETS_SPARK_REMOTE`` points the local
deployment at an external Spark Connect server; ``ML_ASSETS_ONLINE_STORE_URL`` points the
online store at PostgreSQL (default: SQLite under the home; bound as ``dg.EnvVar`` so its
password never reaches Dagster's storage); ``ML_ASSETS_SCALE`` sizes the demo source;
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

from ml_assets.lib.redact import redact_url
from ml_assets.lib.source import SCALES
from ml_assets.resources.lakehouse import LocalDeltaLakehouse
from ml_assets.resources.landing import DemoSource, LandingZone
from ml_assets.resources.mlflow import LocalMlflow
from ml_assets.resources.online_store import SqlOnlineStore
from ml_assets.resources.reports import LocalReports
from ml_assets.resources.serving import LocalEndpointConfigs
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
    spark_remote: str | None = None
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
        spark_remote=remote,
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


def build_resources(settings: Settings) -> dict[str, object]:
    """The deployment table: resource key -> implementation for this deployment."""
    spark: SparkResource = (
        SparkConnectRemote(remote=settings.spark_remote)
        if settings.spark_remote
        else EmbeddedSailSpark()
    )
    return {
        "spark": spark,
        "lakehouse": LocalDeltaLakehouse(warehouse_dir=str(settings.warehouse_dir), spark=spark),
        "landing": LandingZone(root=str(settings.landing_dir), spark=spark),
        "demo_source": DemoSource(
            scale=settings.scale,
            drift_from=settings.inject_drift_from,
            backdated_downgrades=settings.inject_leakage,
        ),
        "mlflow_tracking": LocalMlflow(home=str(settings.home)),
        "online_store": _online_store(settings),
        "endpoint_configs": LocalEndpointConfigs(directory=str(settings.serving_dir)),
        "reports": LocalReports(directory=str(settings.reports_dir)),
    }
