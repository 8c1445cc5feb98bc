"""The shadow process: copies of requests for the entities routed at 0 %, scored and logged
by a process of its own, never returned."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import queue
import threading

from ml_assets.deployments import Settings
from ml_assets.programs.gateway.defaults import SHADOW_BACKLOG

log = logging.getLogger(__name__)


class ShadowCopies:
    """Copies of requests for the shadow entities (routed at 0 %), scored by a process of its
    own at the lowest CPU priority (Linux's SCHED_IDLE, and nice 19): the answer never waits
    for a shadow, a shadow never takes the gateway's GIL, and the request path gets the CPU
    first (on a saturated machine a shadow still costs some: the serving benchmark measures
    it).
    The process starts with the first copy, loads the same endpoint config and writes its own
    inference-log files. The backlog is bounded; a copy beyond it is dropped and counted, never
    waited for; ``close`` lets the process drain what is queued and waits for it."""

    def __init__(
        self, settings: Settings | None, endpoint_name: str, backlog: int = SHADOW_BACKLOG
    ):
        self.settings, self.endpoint_name, self.backlog = settings, endpoint_name, backlog
        self.dropped = 0
        self.submitted = 0  # copies queued; the process counts them scored or failed
        self.start_error: str | None = None
        self._done = (0, 0)  # scored, failed: the counts of a closed process
        self._context = multiprocessing.get_context("spawn")
        self._queue = None
        self._counts = None
        self._process = None
        self._lock = threading.Lock()

    def submit(self, item: tuple[bytes, str, str | None, str, str]) -> bool:
        with self._lock:
            if self.settings is None:
                return False
            if self.start_error is not None:  # it could not start: the copies are dropped
                self.dropped += 1
                return False
            if self._process is None:
                self._queue = self._context.Queue(maxsize=self.backlog)
                self._counts = self._context.Array("q", 2)  # scored, failed
                process = self._context.Process(
                    target=shadow_main,
                    args=(self.settings, self.endpoint_name, self._queue, self._counts),
                    name=f"shadow-{self.endpoint_name}",
                    daemon=True,
                )
                try:
                    process.start()
                except Exception as exc:  # the answer is unaffected; /ready says why
                    log.exception("the shadow process of %s did not start", self.endpoint_name)
                    self.start_error = f"{type(exc).__name__}: {exc}"[:300]
                    self.dropped += 1
                    self._queue.close()  # released now (see close)
                    self._queue = self._counts = None
                    return False
                self._process = process
            elif not self._process.is_alive():  # it died (a bad config, a crash): say so
                self.start_error = f"the shadow process exited with {self._process.exitcode}"
                self.dropped += 1
                return False
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.dropped += 1
                return False
            self.submitted += 1
            return True

    def stats(self) -> dict[str, object]:
        scored, failed = self._done if self._counts is None else tuple(self._counts[:])
        pending = 0
        if self._queue is not None:
            with contextlib.suppress(NotImplementedError):
                pending = self._queue.qsize()
        return {
            "process": "not started" if self._process is None else self._process.pid,
            "alive": self._process is not None and self._process.is_alive(),
            "pending": pending,
            "submitted": self.submitted,
            "scored": scored,
            "failed": failed,
            "dropped": self.dropped,
            "backlog": self.backlog,
            "start_error": self.start_error,
        }

    def close(self, timeout: float = 120.0) -> None:
        """The queued copies are scored and logged, then the process ends."""
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.is_alive():
                self._queue.put(None, timeout=timeout)
                process.join(timeout)
        except queue.Full:
            log.error("the shadow process took no copy in %.0f s", timeout)
        if process.is_alive():
            log.error("the shadow process did not finish in %.0f s: stopped", timeout)
            process.terminate()
            process.join(10)
        self._done = tuple(self._counts[:])
        # released here, not by a later garbage collection: multiprocessing's finalizers then
        # run now (Python 3.11's AST parser fails if one runs in the middle of a parse)
        if process.exitcode != 0:  # nobody reads the pipe: copies still buffered are lost
            self._queue.cancel_join_thread()
        self._queue.close()
        self._queue.join_thread()
        process.close()
        self._queue = self._counts = None


def shadow_main(settings: Settings, endpoint_name: str, copies, counts) -> None:
    """The shadow process: score each copied request with every shadow entity of the
    endpoint's current config and log the answer (``shadow``), until the ``None`` sentinel.

    Its lifetime is the gateway's: in a process group of its own, so a signal sent to the
    gateway's group (a supervisor's SIGTERM) does not cut it short before the gateway's
    shutdown has sent it the sentinel and it has written its log; and it ends by itself
    within a second should the gateway die without one."""
    with contextlib.suppress(OSError):
        os.nice(19)
    with contextlib.suppress(OSError, AttributeError):  # Linux: run only on an idle CPU
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    # imported here, not above: core imports this module (a Gateway holds its ShadowCopies)
    from ml_assets.programs.gateway.core import gateway_for

    parent = multiprocessing.parent_process()
    gateway = gateway_for(settings, endpoint_name)
    try:
        while True:
            try:
                item = copies.get(timeout=1.0)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    log.error("the gateway is gone: the shadow process ends")
                    return
                continue
            if item is None:
                break
            body, request_id, client_id, received, as_of = item
            gateway.reload_if_changed()
            ok = gateway.score_shadows(
                body,
                request_id,
                client_id,
                dt.datetime.fromisoformat(received),
                dt.datetime.fromisoformat(as_of),
            )
            with counts.get_lock():
                counts[0 if ok else 1] += 1
    finally:
        if gateway.inference_log is not None:
            gateway.inference_log.close()
