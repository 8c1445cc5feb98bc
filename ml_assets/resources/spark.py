"""Spark sessions: an embedded Sail server per process, or any Spark Connect server.

All Spark code in the project is written against the Spark Connect DataFrame API, so the same
code runs on the embedded Sail engine (alone or as a local cluster of a driver and workers), on
Apache Spark 4 with Delta, and on Databricks. Each resource names its engine's traits
(``ml_assets.lib.engines``), which choose the few engine-specific code paths.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from abc import ABC, abstractmethod
from urllib.parse import urlparse

import dagster as dg
from pydantic import Field
from pyspark.sql import SparkSession

from ml_assets.lib.engines import (
    DATABRICKS,
    DATABRICKS_SERVERLESS,
    EngineTraits,
    engine_traits,
)

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 5.0

SESSION_CONF = {"spark.sql.session.timeZone": "UTC"}

_lock = threading.Lock()
# The embedded servers of this process by mode, with the pid that started them: a forked child
# inherits the Python objects but not the server threads, so it must start its own. The
# references are kept for the life of the process: when a server object is garbage-collected
# the server stops and later queries hang without an error (DESIGN.md).
_embedded: dict[str, tuple[int, object]] = {}
_sessions: dict[tuple[int, str], SparkSession] = {}
SAIL_MODES = ("local", "local-cluster")


def _embedded_remote(mode: str = "local", workers: int = 2) -> str:
    """The address of this process's embedded Sail server of ``mode``, started on first use.

    ``local-cluster`` runs a driver and ``workers`` workers that exchange data over RPC, so
    query plans run as distributed stages. Sail reads its configuration from the environment
    when a server starts; it is set for that moment only.
    """
    if mode not in SAIL_MODES:
        raise ValueError(f"Sail mode {mode!r}; expected one of {SAIL_MODES}.")
    with _lock:
        current = _embedded.get(mode)
        if current is None or current[0] != os.getpid() or not current[1].running:
            # Sail logs every session at INFO; keep its log to warnings unless asked otherwise.
            os.environ.setdefault("RUST_LOG", "warn")
            from pysail.spark import SparkConnectServer

            settings = {"SAIL_MODE": mode}
            if mode == "local-cluster":
                settings["SAIL_CLUSTER__WORKER_INITIAL_COUNT"] = str(workers)
            saved = {k: os.environ.get(k) for k in settings}
            os.environ.update(settings)
            try:
                server = SparkConnectServer(ip="127.0.0.1", port=0)
                server.start(background=True)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            _embedded[mode] = (os.getpid(), server)
            atexit.register(stop_embedded_server)
            log.info(
                "Started embedded Sail Spark Connect server (%s) on %s",
                mode,
                server.listening_address,
            )
        host, port = _embedded[mode][1].listening_address
        return f"sc://{host}:{port}"


def stop_embedded_server() -> None:
    """Stop this process's embedded servers and forget its sessions (safe to call twice)."""
    with _lock:
        for key in [k for k in _sessions if k[0] == os.getpid()]:
            session = _sessions.pop(key)
            try:
                session.stop()
            except Exception as exc:  # the server may already be gone at interpreter exit
                log.debug("Ignoring error while stopping a Spark session at shutdown: %s", exc)
        for mode, (pid, server) in list(_embedded.items()):
            if pid == os.getpid():
                server.stop()
                del _embedded[mode]


def close_session(remote: str) -> None:
    """Stop this process's session to ``remote`` (before that server goes away: a client
    whose server has gone retries its release call for minutes at interpreter exit)."""
    with _lock:
        session = _sessions.pop((os.getpid(), remote), None)
    if session is not None:
        session.stop()


def session_for(remote: str) -> SparkSession:
    """One Spark Connect session per process and remote, with the session time zone UTC."""
    key = (os.getpid(), remote)
    with _lock:
        session = _sessions.get(key)
        if session is None:
            _require_reachable(remote)
            builder = SparkSession.builder.remote(remote)
            for k, v in SESSION_CONF.items():
                builder = builder.config(k, v)
            session = builder.create()
            _sessions[key] = session
        return session


def shown(remote: str) -> str:
    """``sc://host:port`` without what follows: a Databricks connection string carries a token
    after the first '/'."""
    head, slash, rest = remote.partition("://")[2].partition("/")
    return f"sc://{head}" + ("/;…" if slash and rest else "")


def _require_reachable(remote: str) -> None:
    """Fail within seconds when nothing listens at ``remote``: the Spark Connect client itself
    retries an unreachable server for minutes before it reports anything."""
    parsed = urlparse(remote.replace("sc://", "http://", 1))
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise ValueError(
            f"Invalid Spark Connect address {shown(remote)!r}: expected 'sc://host:port'."
        )
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConnectionError(
            f"No Spark Connect server answers at {shown(remote)} ({exc}). For the spark lane "
            "start it with 'make spark-up' (make check ENGINE=spark starts and stops it); for "
            "ML_ASSETS_SPARK_REMOTE check the address and that the server is up."
        ) from exc


class SparkResource(dg.ConfigurableResource, ABC):
    """Where Spark DataFrames are computed. Assets are typed against this interface."""

    @abstractmethod
    def get_session(self) -> SparkSession: ...

    @property
    @abstractmethod
    def traits(self) -> EngineTraits:
        """What the engine behind the session can do (``ml_assets.lib.engines``)."""


class EmbeddedSailSpark(SparkResource):
    """The embedded Sail engine: one server per process, started on first use, stopped at exit.

    Shared by every asset of a process (tests and in-process runs); under the multiprocess
    executor each step process starts its own, which takes about half a second. ``mode``
    ``local-cluster`` is the ``sail-cluster`` lane: a driver and ``workers`` workers.
    """

    mode: str = Field(default="local", description="'local' or 'local-cluster'")
    workers: int = 2

    def get_session(self) -> SparkSession:
        return session_for(_embedded_remote(self.mode, self.workers))

    @property
    def traits(self) -> EngineTraits:
        return engine_traits("sail-cluster" if self.mode == "local-cluster" else "sail")


class SparkConnectRemote(SparkResource):
    """An external Spark Connect server (Apache Spark 4 with Delta, a Sail cluster, ...)."""

    remote: str
    engine: str = Field(default="spark", description="the engine behind it: 'spark' or 'sail'")

    @property
    def traits(self) -> EngineTraits:
        return engine_traits(self.engine)

    def get_session(self) -> SparkSession:
        if not self.remote.startswith("sc://"):
            raise ValueError(
                f"Invalid Spark Connect address {shown(self.remote)!r}: expected 'sc://host:port'."
            )
        return session_for(self.remote)


class DatabricksConnectSpark(SparkResource):
    """Spark on Databricks through Databricks Connect: serverless compute, or the cluster
    ``cluster_id``. Credentials as the SDK reads them (``host`` and ``token``, bound from
    ``DATABRICKS_HOST``/``DATABRICKS_TOKEN``, or a config ``profile``). The session is made on
    first use; loading the definitions contacts nothing. Databricks Connect ships its own
    ``pyspark`` and cannot share an environment with pysail and pyspark 4.2: it is installed by
    ``make setup DEPLOYMENT=databricks`` (README, "Running on Databricks")."""

    host: str | None = None
    token: str | None = None
    profile: str | None = None
    cluster_id: str | None = Field(None, description="a cluster id; default: serverless")

    @property
    def traits(self) -> EngineTraits:
        return DATABRICKS if self.cluster_id else DATABRICKS_SERVERLESS

    def get_session(self) -> SparkSession:
        try:
            from databricks.connect import DatabricksSession
        except ImportError:
            raise ImportError(
                "Databricks Connect is not installed in this environment (the local one holds "
                "pysail and pyspark 4.2, which it conflicts with). Build the Databricks "
                "environment with 'make setup DEPLOYMENT=databricks' and run from it."
            ) from None
        builder = DatabricksSession.builder
        if self.profile:
            builder = builder.profile(self.profile)
        if self.host:
            builder = builder.host(self.host)
        if self.token:
            builder = builder.token(self.token)
        builder = builder.clusterId(self.cluster_id) if self.cluster_id else builder.serverless()
        session = builder.getOrCreate()
        for k, v in SESSION_CONF.items():
            session.conf.set(k, v)
        return session
