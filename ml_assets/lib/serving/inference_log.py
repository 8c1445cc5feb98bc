"""The gateway's inference log, as Databricks inference tables keep one: every answer, written
off the request path.

The request path turns its answer into JSON lines (about 15 microseconds) and appends them to
a bounded in-memory buffer: it never blocks and never wakes the writer; when the buffer is
full the answer is dropped and counted, and the count is exposed. A writer thread wakes every
``flush_seconds`` and writes what is buffered in batches, each batch one JSON-lines file under
``<root>/date=YYYY-MM-DD/`` (by the request's date), written to a ``.tmp`` name and renamed,
so a reader never sees half a file. ``close()`` writes what is buffered: nothing is lost on a
clean shutdown. The ``serving/<stem>_inference_log`` asset ingests the files into the Delta
table ``main.serving.<endpoint>_inference_log`` (``INFERENCE_LOG_COLUMNS``), daily-partitioned
by ``date``.

Why the JSON is made on the request path: the writer shares the GIL with the requests. When
the writer serialized the answers (woken by a queue for each one, or each second for a
second's worth at once) it held the GIL for milliseconds at a time, and a request arriving
meanwhile waited: at one connection p99 was 4.7-6.9 ms against 1.5 ms without the log.
Turning each answer into lines where it is made costs the request about 15 microseconds, and
the writer only joins and writes: p99 1.6-1.9 ms (``benchmarks/README.md``).

One row per scored record (the request's ``row_index``), with the features the model received
(after the online lookup and the request's overrides) as JSON, the prediction, the served entity
and model version, the status code and the latency; a refused request is one row with its status
code and no record. ``user_id`` and ``request_id`` join a row to its outcome.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ml_assets.lib.lakehouse import Column, TableId, TableSpec

log = logging.getLogger("ml_assets.lib.serving.inference_log")

QUEUE_CAPACITY = 50_000  # answers: minutes of traffic at the gateway's throughput
BATCH_RECORDS = 2_000  # a file holds at most this many records
FLUSH_SECONDS = 1.0  # and is written at least this often while records arrive

INFERENCE_LOG_COLUMNS: tuple[Column, ...] = (
    Column("request_id", "string", False, "The gateway's id of the request (unique)"),
    Column("client_request_id", "string", True, "The X-Request-Id header the client sent"),
    Column("row_index", "int", False, "The record's position in the request (0 for a refusal)"),
    Column("date", "date", False, "Day of request_time (UTC): the table's partition column"),
    Column("request_time", "timestamp", False, "When the gateway received the request (UTC)"),
    Column("feature_time", "timestamp", True, "The time the features were looked up as of"),
    Column("endpoint_name", "string", False, "The serving endpoint"),
    Column("served_entity_name", "string", True, "The served entity that answered"),
    Column("model_name", "string", True, "Registered model of the served entity"),
    Column("model_version", "string", True, "Its registered version"),
    Column("user_id", "bigint", True, "The entity key of the record: the join key to outcomes"),
    Column("features", "string", True, "JSON: the model's inputs after lookup and overrides"),
    Column("lookup_missed", "boolean", True, "A lookup matched no row for this record"),
    Column("prediction", "double", True, "The answer for this record"),
    Column("status_code", "int", False, "HTTP status of the answer"),
    Column("error", "string", True, "The error message of a refused request"),
    Column("execution_time_ms", "double", False, "Time the gateway took for the request"),
    Column(
        "shadow",
        "boolean",
        False,
        "A shadow's answer: scored on a copy of the request, logged, never returned (its "
        "request_id is the request's, suffixed with ':' and the served entity)",
    ),
)


@dataclass(frozen=True)
class Answer:
    """What the gateway answered one request: everything the log needs (``rows()``: its
    lines, as ``InferenceLogger.log`` writes them)."""

    request_id: str
    request_time: dt.datetime
    endpoint_name: str
    status_code: int
    execution_time_ms: float
    feature_time: dt.datetime | None = None
    served_entity_name: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    user_ids: Sequence[object] = ()
    features: Sequence[Mapping[str, object]] = ()
    predictions: Sequence[float] = ()
    lookup_missed: Sequence[bool] = ()
    error: str | None = None
    client_request_id: str | None = None
    shadow: bool = False

    def rows(self) -> list[dict[str, object]]:
        common = {
            "request_id": self.request_id,
            "client_request_id": self.client_request_id,
            "date": self.request_time.date().isoformat(),
            "request_time": self.request_time.isoformat(),
            "feature_time": None if self.feature_time is None else self.feature_time.isoformat(),
            "endpoint_name": self.endpoint_name,
            "served_entity_name": self.served_entity_name,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "status_code": self.status_code,
            "error": self.error,
            "execution_time_ms": round(self.execution_time_ms, 3),
            "shadow": self.shadow,
        }
        if not self.predictions:
            return [
                common
                | {"row_index": 0, "user_id": None, "features": None, "lookup_missed": None}
                | {"prediction": None}
            ]
        return [
            common
            | {
                "row_index": i,
                "user_id": user,
                "features": json.dumps(_jsonable(features), sort_keys=True),
                "lookup_missed": missed,
                "prediction": prediction,
            }
            for i, (user, features, prediction, missed) in enumerate(
                zip(self.user_ids, self.features, self.predictions, self.lookup_missed, strict=True)
            )
        ]


def _jsonable(record: Mapping[str, object]) -> dict[str, object]:
    """Feature values as JSON: NaN as null, timestamps as ISO strings, numpy scalars as
    Python numbers."""
    out: dict[str, object] = {}
    for name, value in record.items():
        if hasattr(value, "item"):  # numpy scalar
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif isinstance(value, dt.datetime | dt.date):
            value = value.isoformat()
        out[name] = value
    return out


@dataclass
class InferenceLogger:
    """A bounded buffer of answers and the thread that writes them to ``root`` in batches."""

    root: Path
    capacity: int = QUEUE_CAPACITY
    batch_records: int = BATCH_RECORDS
    flush_seconds: float = FLUSH_SECONDS
    dropped: int = 0
    answers_written: int = 0
    rows_written: int = 0
    files_written: int = 0
    write_errors: int = 0
    answers_lost: int = 0  # in batches that could not be written (disk full, permissions)
    # a deque's append and popleft are atomic: the request path takes no lock and wakes nobody
    _pending: deque = field(default_factory=deque, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _sequence: itertools.count = field(default_factory=itertools.count, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.batch_records < 1 or self.flush_seconds <= 0:
            raise ValueError(
                f"InferenceLogger needs a positive capacity, batch and flush interval; got "
                f"{self.capacity}, {self.batch_records}, {self.flush_seconds}."
            )
        self.root = Path(self.root)

    def start(self) -> InferenceLogger:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()
        return self

    def log(self, answer: Answer) -> bool:
        """Buffer one answer as its JSON lines; never blocks. False when it is not buffered:
        the buffer is full (counted in ``dropped``), or a value JSON cannot hold (counted in
        ``answers_lost``, logged). Producers on several threads may overshoot ``capacity`` by
        at most one each."""
        if len(self._pending) >= self.capacity:
            with self._lock:
                self.dropped += 1
            return False
        try:
            lines = [json.dumps(row) for row in answer.rows()]
        except (TypeError, ValueError) as exc:  # a value JSON cannot hold: counted, shown
            with self._lock:
                self.answers_lost += 1
            log.error("inference log: answer %s not serializable: %s", answer.request_id, exc)
            return False
        self._pending.append((answer.request_time.date().isoformat(), lines))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write what is buffered and join the writer: a clean shutdown loses nothing."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("inference log writer did not finish in %.0f s", timeout)
        else:  # never started: write what was buffered
            self._write_pending()

    def stats(self) -> dict[str, int]:
        return {
            "queued": len(self._pending),
            "capacity": self.capacity,
            "dropped": self.dropped,
            "answers_written": self.answers_written,
            "rows_written": self.rows_written,
            "files_written": self.files_written,
            "write_errors": self.write_errors,
            "answers_lost": self.answers_lost,
        }

    # -- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.wait(self.flush_seconds):
            self._write_pending()
        self._write_pending()  # stopping: what was buffered before close() is written

    def _write_pending(self) -> None:
        while self._pending:
            batch: list[tuple[str, list[str]]] = []
            while self._pending and len(batch) < self.batch_records:
                batch.append(self._pending.popleft())
            self._write(batch)

    def _write(self, batch: Sequence[tuple[str, list[str]]]) -> None:
        """Write buffered answers (their day and JSON lines): one file per day. A day whose
        file cannot be written counts its answers as lost; the days written stay counted."""
        by_date: dict[str, list[list[str]]] = {}
        for day, lines in batch:
            by_date.setdefault(day, []).append(lines)
        for day, answers in by_date.items():
            lines = [line for answer in answers for line in answer]
            try:
                folder = self.root / f"date={day}"
                folder.mkdir(parents=True, exist_ok=True)
                # time first: files sort in the order written; pid and a counter: unique
                name = f"{time.time_ns()}-{os.getpid()}-{next(self._sequence)}"
                tmp = folder / f"{name}.jsonl.tmp"
                tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
                os.replace(tmp, folder / f"{name}.jsonl")
            except OSError as exc:  # a full disk must not take the gateway down: counted, logged
                with self._lock:
                    self.write_errors += 1
                    self.answers_lost += len(answers)
                log.error("inference log: %d answers of %s not written: %s", len(answers), day, exc)
                continue
            self.files_written += 1
            self.answers_written += len(answers)
            self.rows_written += len(lines)


# -- ingestion: the files into the Delta table ------------------------------------------------
def inference_log_table(table_name: str, endpoint: str, owner: str = "") -> TableSpec:
    """``<catalog>.serving.<endpoint>_inference_log``: one row per scored record (or refused
    request), partitioned by ``date`` as Databricks' inference tables are."""
    return TableSpec(
        name=TableId.parse(table_name),
        columns=INFERENCE_LOG_COLUMNS,
        partition_by=("date",),
        primary_key=("request_id", "row_index"),
        description=f"Every answer of the {endpoint} endpoint: the features the model received "
        "after lookup and overrides, its prediction, the served entity and version, status "
        "and latency. Joined to outcomes by user_id (or request_id).",
        owner=owner,
    )


@dataclass(frozen=True)
class LoggedFiles:
    """The log files waiting under ``root``, read: rows to merge and lines that were not."""

    files: tuple[Path, ...]
    rows: list[dict[str, object]]
    unreadable: dict[str, int]  # file -> lines that are not a JSON object of the log's fields


_FIELDS = frozenset(c.name for c in INFERENCE_LOG_COLUMNS)


def pending_files(root: Path) -> list[Path]:
    """Written files (``date=*/*.jsonl``, never a ``.tmp`` being written), oldest first."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted(root.glob("date=*/*.jsonl"), key=lambda p: p.name)


def read_files(files: Sequence[Path]) -> LoggedFiles:
    rows: list[dict[str, object]] = []
    unreadable: dict[str, int] = {}
    for path in files:
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:  # bytes that are not UTF-8 make the line unreadable, never replaced
                row = json.loads(line.decode("utf-8"))
            except (ValueError, RecursionError):  # not JSON, a 5,000-digit number, too deep
                row = None
            typed = _typed(row) if isinstance(row, dict) and set(row) == _FIELDS else None
            if typed is None:
                unreadable[path.name] = unreadable.get(path.name, 0) + 1
                continue
            rows.append(typed)
    return LoggedFiles(tuple(files), rows, unreadable)


def _typed(row: dict[str, object]) -> dict[str, object] | None:
    """The row with its date and times parsed; None when a value has the wrong type."""
    try:
        feature_time = row["feature_time"]
        return row | {
            "date": dt.date.fromisoformat(str(row["date"])),
            "request_time": dt.datetime.fromisoformat(str(row["request_time"])),
            "feature_time": None
            if feature_time is None
            else dt.datetime.fromisoformat(str(feature_time)),
            "row_index": int(row["row_index"]),  # type: ignore[arg-type]
            "status_code": int(row["status_code"]),  # type: ignore[arg-type]
            "execution_time_ms": float(row["execution_time_ms"]),  # type: ignore[arg-type]
            "shadow": bool(row.get("shadow", False)),  # files written before it existed
        }
    except (TypeError, ValueError):
        return None


def done_with(files: LoggedFiles, root: Path) -> None:
    """After the merge committed: files read whole move to ``_ingested/``, files with an
    unreadable line to ``_quarantine/`` (kept for a person; counted in the metadata). A crash
    before this re-reads them next time, and the merge by key writes nothing twice."""
    for path in files.files:
        target = Path(root) / ("_quarantine" if path.name in files.unreadable else "_ingested")
        target = target / path.parent.name
        target.mkdir(parents=True, exist_ok=True)
        os.replace(path, target / path.name)
