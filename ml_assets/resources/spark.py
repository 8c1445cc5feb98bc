"""Spark sessions: an embedded Sail server per process, or any Spark Connect server.

All Spark code in the project is written against the Spark Connect DataFrame API, so the same
code runs on the embedded Sail engine, on Apache Spark 4 with Delta, and on Databricks.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from abc import ABC, abstractmethod

import dagster as dg
from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

SESSION_CONF = {"spark.sql.session.timeZone": "UTC"}

_lock = threading.Lock()
# The embedded server of this process, with the pid that started it: a forked child inherits
# the Python object but not the server thread, so it must start its own. The reference is
# kept for the life of the process: when the server object is garbage-collected the server
# stops and later queries hang without an error (DESIGN.md).
_embedded: tuple[int, object] | None = None
_sessions: dict[tuple[int, str], SparkSession] = {}


def _embedded_remote() -> str:
    global _embedded
    with _lock:
        if _embedded is None or _embedded[0] != os.getpid() or not _embedded[1].running:
            # Sail logs every session at INFO; keep its log to warnings unless asked otherwise.
            os.environ.setdefault("RUST_LOG", "warn")
            from pysail.spark import SparkConnectServer

            server = SparkConnectServer(ip="127.0.0.1", port=0)
            server.start(background=True)
            _embedded = (os.getpid(), server)
            atexit.register(stop_embedded_server)
            log.info("Started embedded Sail Spark Connect server on %s", server.listening_address)
        host, port = _embedded[1].listening_address
        return f"sc://{host}:{port}"


def stop_embedded_server() -> None:
    """Stop this process's embedded server and forget its sessions (safe to call twice)."""
    global _embedded
    with _lock:
        if _embedded is None or _embedded[0] != os.getpid():
            return
        for key in [k for k in _sessions if k[0] == os.getpid()]:
            session = _sessions.pop(key)
            try:
                session.stop()
            except Exception as exc:  # the server may already be gone at interpreter exit
                log.debug("Ignoring error while stopping a Spark session at shutdown: %s", exc)
        _embedded[1].stop()
        _embedded = None


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
            builder = SparkSession.builder.remote(remote)
            for k, v in SESSION_CONF.items():
                builder = builder.config(k, v)
            session = builder.create()
            _sessions[key] = session
        return session


class SparkResource(dg.ConfigurableResource, ABC):
    """Where Spark DataFrames are computed. Assets are typed against this interface."""

    @abstractmethod
    def get_session(self) -> SparkSession: ...


class EmbeddedSailSpark(SparkResource):
    """The embedded Sail engine: one server per process, started on first use, stopped at exit.

    Shared by every asset of a process (tests and in-process runs); under the multiprocess
    executor each step process starts its own, which takes about half a second.
    """

    def get_session(self) -> SparkSession:
        return session_for(_embedded_remote())


class SparkConnectRemote(SparkResource):
    """An external Spark Connect server (Apache Spark 4 with Delta, a Sail cluster, ...)."""

    remote: str

    def get_session(self) -> SparkSession:
        if not self.remote.startswith("sc://"):
            raise ValueError(
                f"Invalid Spark Connect address {self.remote!r}: expected 'sc://host:port'."
            )
        return session_for(self.remote)
