"""The local Dagster instance: Dagster's SQLite storage, its index connection kept open.

Dagster's ``SqliteEventLogStorage`` creates a SQLAlchemy engine and opens a SQLite connection
for every read and write, and an asset event is written four times (the run's database, then
the index database's event, tags and asset rows). Closing the last connection to a database in
WAL mode checkpoints it, which syncs the file; a new engine also compiles every statement
afresh. A partition-range run records a planned and a materialization event per asset and
day (2,598 of the demo job's 3,192 events), so the storage, not the work, was ~20 s of it.

``KeptIndexSqliteEventLogStorage`` changes how connections are made and how a batch is
written:

- the index database (``history/runs/index.db``, every asset event of every run) keeps one
  engine and one connection for the storage's life; no process watches that file;
- a run's database keeps its engine (its compiled statements) but still closes its connection
  after each use, so the checkpoint still touches ``<run_id>.db``: the Dagster UI follows a
  running run's events by watching that file change, and would see nothing until the run
  ended if the connection stayed open (its writes would stay in ``<run_id>.db-wal``);
- Dagster hands a run's planned events, and a step's materializations of a partition range,
  to ``store_event_batch`` as one batch when ``DAGSTER_EVENT_BATCH_SIZE`` is set (the
  Makefile sets it; Dagster's SQLite storage writes a batch event by event): its asset events
  are written in one transaction on the run's database and one on the index, the same rows.
  If the index's transaction fails, Dagster stores the batch again one event at a time, and
  the run's log may then show those events twice (never the asset's history: the index's
  transaction is rolled back).

The files, tables, rows and their durability (SQLite's defaults) are Dagster's own: an
instance written by either class is read by the other. ``benchmarks/dagster_events.py`` (a
run of two assets over 212 days, 861 events, on disk, 2 cores): 8.1 ms an event with
Dagster's storage, 4.1 ms with this one one event at a time, 1.35 ms in batches, 1.5 ms in
memory.

``deploy/dagster.yaml`` selects it for ``make run`` and ``make ui``; ``local_instance`` builds
the same instance for ``make check`` and the tests. It subclasses Dagster's SQLite storage
classes (``dagster._core``, pinned in ``requirements.lock``): its tests run Dagster's own
watch, wipe and cross-process reads against it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool, StaticPool

__all__ = ["KeptIndexSqliteEventLogStorage", "KeptIndexSqliteStorage", "local_instance"]

# run databases whose engines are kept (a UI process reads many runs over its life)
RUN_ENGINES_KEPT = 16
# events per multi-row INSERT: 7 columns each, within the 999 bound values of SQLite < 3.32
ROWS_PER_INSERT = 100


class KeptIndexSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log, its index connection and its engines kept (module docstring)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        # set before Dagster's __init__, which may index a new home through _connect
        self._index_engine: Engine | None = None
        self._run_engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(  # ty: ignore[invalid-method-override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict
    ) -> KeptIndexSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine (called with ``_db_lock`` held, like every use of a connection)."""
        if shard == INDEX_SHARD_NAME:
            if self._index_engine is None:
                self._index_engine = self._create_engine(shard, keep_connection=True)
            return self._index_engine
        engine = self._run_engines.pop(shard, None) or self._create_engine(shard)
        self._run_engines[shard] = engine  # the most recently used last
        while len(self._run_engines) > RUN_ENGINES_KEPT:
            self._run_engines.popitem(last=False)[1].dispose()
        return engine

    def _create_engine(self, shard: str, keep_connection: bool = False) -> Engine:
        # One connection, used by one thread at a time (under _db_lock): SQLite's same-thread
        # check would refuse the daemon's and the webserver's other threads.
        return create_engine(
            self.conn_string_for_shard(shard),
            poolclass=StaticPool if keep_connection else NullPool,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """A batch of Dagster's (a run's planned events, a step's partition materializations;
        sent when ``DAGSTER_EVENT_BATCH_SIZE`` is set): its asset events in one transaction
        per database, the rows ``store_event`` would write for each; any other event of the
        batch (a planned check) is then stored by ``store_event``."""
        assets = [e for e in events if e.is_dagster_event and e.dagster_event_type in ASSET_EVENTS]
        if len({e.run_id for e in events}) != 1 or len(assets) < 2:
            super().store_event_batch(events)  # one by one
            return
        with self.run_connection(assets[0].run_id) as conn:
            for first in range(0, len(assets), ROWS_PER_INSERT):
                conn.execute(
                    self.prepare_insert_event_batch(assets[first : first + ROWS_PER_INSERT])
                )
        with self.index_transaction() as conn:
            ids = [
                conn.execute(self.prepare_insert_event(e)).inserted_primary_key[0] for e in assets
            ]
            self._store_asset_event_tags(conn, assets, ids)
            for event, event_id in zip(assets, ids, strict=True):
                self._store_asset_event(conn, event, event_id)
        for event in events:
            if not (event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS):
                self.store_event(event)

    def wipe(self) -> None:
        super().wipe()  # deletes the run databases (none is open: their connections close)
        with self._db_lock:
            self._dispose_run_engines()

    def dispose(self) -> None:
        super().dispose()
        with self._db_lock:
            self._dispose_run_engines()
            if self._index_engine is not None:
                self._index_engine.dispose()  # closes the connection (a final checkpoint)
                self._index_engine = None

    def _dispose_run_engines(self) -> None:
        while self._run_engines:
            self._run_engines.popitem()[1].dispose()


class KeptIndexSqliteStorage(DagsterSqliteStorage):
    """``storage: sqlite`` with the event log above: the same files under ``base_dir``
    (``history/runs.db``, ``history/runs/*.db``, ``schedules/``)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self.base_dir = base_dir
        self._run_storage = SqliteRunStorage.from_local(os.path.join(base_dir, "history", ""))
        self._event_log_storage = KeptIndexSqliteEventLogStorage(
            os.path.join(base_dir, "history", "runs", "")
        )
        self._schedule_storage = SqliteScheduleStorage.from_local(
            os.path.join(base_dir, "schedules")
        )
        self._inst_data = inst_data
        # DagsterStorage's __init__: DagsterSqliteStorage's would open its own event log too
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(  # ty: ignore[invalid-method-override]
        cls, inst_data: ConfigurableClassData, config_value: dict
    ) -> KeptIndexSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)


def storage_config(dagster_home: str) -> dict:
    """The ``storage`` entry of an instance's config selecting this storage under a home, as
    ``deploy/dagster.yaml`` has it (there, the home is ``$DAGSTER_HOME``)."""
    return {
        "custom": {
            "module": __name__,
            "class": KeptIndexSqliteStorage.__name__,
            "config": {"base_dir": dagster_home},
        }
    }


def local_instance(dagster_home: Path) -> dg.DagsterInstance:
    """A persistent instance in ``dagster_home`` with the storage ``make run`` uses (for
    ``make check`` and the tests, whose homes are not ``$DAGSTER_HOME``)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.local_temp(
        str(dagster_home), overrides={"storage": storage_config(str(dagster_home))}
    )
