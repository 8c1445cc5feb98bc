"""``make serve``: the local serving gateway that honours the endpoint config.

It loads the served entities named in ``$ML_ASSETS_HOME/serving/<endpoint>.json`` (MLflow
pyfunc models by registered version) and answers the part of the Databricks serving REST API
that ``databricks-sdk`` uses, so ``WorkspaceClient(host="http://127.0.0.1:8080", token=...)``
manages and queries it:

    POST /serving-endpoints/{name}/invocations   dataframe_records | dataframe_split | inputs
    GET  /api/2.0/serving-endpoints              list (``serving_endpoints.list``)
    GET  /api/2.0/serving-endpoints/{name}       state.ready, state.config_update, config,
                                                 pending_config (``serving_endpoints.get``)
    POST /api/2.0/serving-endpoints              create this gateway's endpoint
    PUT  /api/2.0/serving-endpoints/{name}/config  a new config (``update_config``)
    GET  /health                                 the process is up (never needs a token)
    GET  /ready                                  models are loaded (503 until they are)

A config sent by ``POST`` or ``PUT`` is validated as the config asset's checks validate it
(routes, READY registered versions, signatures the online features serve): an invalid one is
refused with 400 naming every problem, and the old one keeps serving. A valid one is written
to the config file and loaded in the background; ``state.config_update`` is ``IN_PROGRESS``
until it serves, then ``NOT_UPDATING`` (or ``UPDATE_FAILED`` if a model failed to load, the
old config still serving), which is what the SDK's ``*_and_wait`` calls poll for. A second
update while one is in progress is refused with 409, as Databricks does. The gateway serves one
endpoint (``--endpoint``); other names are 404 (and 400 to create).

A request carries entity keys (``user_id``) and may override features. The features come
from the online store through the training set's lookups (``lib/serving/user_features.py``),
at the request time: the wall clock, or for the replayed demo data the newest feature time in
the store (``ML_ASSETS_SERVING_CLOCK``; the watcher re-reads it each second the store's
publication record changed, ``/ready`` shows it as ``as_of``). Each request goes to one
served entity by traffic share, deterministically for an ``X-Request-Id``; the answer says
which. A served entity routed at 0 % is a shadow: after the answer, a copy of the request is
queued for a shadow process (its own GIL, at the lowest CPU priority) that scores it as of the
answer's request time and logs the prediction (``shadow``), never returned; a bounded
backlog, a copy beyond it dropped and counted in ``/ready``.

The config file is watched: a change is loaded in the background and swapped in whole, so
requests in flight finish on the models they started with; if the new config is invalid or
a model fails to load, the gateway keeps serving the old ones and ``/ready`` reports the
error. The watcher keys the file on its size, modification time and content hash, so a
rewrite that keeps the modification time is still seen.

With ``ML_ASSETS_SERVING_TOKEN`` set, every path but ``/health`` needs ``Authorization: Bearer
<token>`` (the scheme in any case, RFC 7235; the token compared in constant time), and a caller
without it learns nothing else (not the endpoint's name, not its versions). A body larger than
``ML_ASSETS_SERVING_MAX_BODY_BYTES`` (default 4 MiB) is refused with 413 while it is read, before
any parsing; a client's mistake is a 4xx with a message naming the field, never a 500.

Every answer is logged, as Databricks inference tables log them (``lib/serving/inference_log``):
the request id, time, served entity and version, each record's features after lookup and
overrides, its prediction, status code and latency. The request path only turns the answer
into JSON lines and buffers them (never blocking; a full buffer drops and counts, shown by
``/ready``); a writer thread writes batches to
``$ML_ASSETS_HOME/serving/inference_logs/<endpoint>/date=.../*.jsonl`` every second, drained
at shutdown; the ``serving/<stem>_inference_log`` asset ingests them into Delta.

Scoring is on one thread, and a ``ProbabilityModel`` is scored without pandas (``scorer``):
on two cores a single-record request costs about 1 ms of CPU, so one process serves several
hundred requests a second (``benchmarks/serving.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import hashlib
import hmac
import html
import json
import logging
import multiprocessing
import os
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ml_assets.deployments import Settings, build_resources, current_settings
from ml_assets.lib.features import user_activity
from ml_assets.lib.models.catalog import MODELS
from ml_assets.lib.models.encoding import FeatureEncoding, predict, records_frame
from ml_assets.lib.models.served import ProbabilityModel
from ml_assets.lib.registry.store import Registry
from ml_assets.lib.serving.api import (
    InvocationResponse,
    openapi_document,
    record_model,
    request_model,
)
from ml_assets.lib.serving.endpoint import (
    Endpoint,
    EndpointCoreConfig,
    ServedEntity,
    route_problems,
)
from ml_assets.lib.serving.inference_log import Answer, InferenceLogger
from ml_assets.lib.serving.requests import (
    RequestError,
    choose_route,
    parse_invocation,
    validate_rows,
)
from ml_assets.lib.serving.user_features import (
    LOOKUP_CONTRACTS,
    REQUEST_KEY_TYPES,
    SERVABLE_INPUTS,
    lookup_misses,
    user_records,
)
from ml_assets.lib.serving.validation import config_problems
from ml_assets.lib.training_sets.users import ENTITY_KEY
from ml_assets.resources.online_store import OnlineStore
from ml_assets.resources.serving import LocalEndpointDeployer

log = logging.getLogger("ml_assets.programs.gateway")
MAX_ROWS = 1000
MAX_BODY_BYTES = 4 * 1024 * 1024
# the SDK asks for host metadata, without a token, when its config is built: a plain 404
PUBLIC_PATHS = frozenset({"/health", "/.well-known/databricks-config"})
ENDPOINTS = {m.endpoint: m for m in MODELS.values()}  # endpoint name -> its declared model
DEFAULT_ENDPOINT = next(iter(ENDPOINTS))
# one: the GIL lets one thread score at a time, and a second scoring thread only adds the
# hand-overs between them (single-record requests: 865 against 643 req/s at one connection,
# 803 against 634 at eight); the event loop keeps reading requests meanwhile
SCORING_THREADS = 1
SHADOW_BACKLOG = 1_000  # request copies waiting for the shadows; beyond it a copy is dropped
CLOCK_CACHE_SECONDS = 5.0


@dataclass
class Deployment:
    endpoint: Endpoint
    models: dict[str, object]  # served entity name -> PyFuncModel
    inputs: dict[str, dict[str, str]]  # served entity name -> signature input name -> type
    # served entity name -> its inputs in signature order, string inputs categorical: how the
    # assembled records become its request frame, whatever the model
    encodings: dict[str, FeatureEncoding] = field(init=False)
    entities: dict[str, ServedEntity] = field(init=False)  # served entity name -> its entity
    scorers: dict[str, Callable[[list[dict]], np.ndarray]] = field(init=False)

    def __post_init__(self) -> None:
        self.entities = {e.name: e for e in self.endpoint.config.served_entities}
        self.encodings = {
            served: FeatureEncoding(
                tuple(signature), {c: () for c, kind in signature.items() if kind == "string"}
            )
            for served, signature in self.inputs.items()
        }
        self.scorers = {
            served: scorer(model, self.encodings[served]) for served, model in self.models.items()
        }


def scorer(model, encoding: FeatureEncoding) -> Callable[[list[dict]], np.ndarray]:
    """How a request's records (its features, after lookup and overrides) are scored: the
    project's ``ProbabilityModel`` directly, or any other model through pyfunc's ``predict``
    on a frame of the signature (``records_frame``).

    For a ``ProbabilityModel`` nothing of pandas or pyfunc is in the way, which is where a
    single-record request spent most of its time (CPU per request, measured in-process over
    1,000 requests: 3.6 ms -> 1.8 ms -> 0.8 ms, the same predictions):

    - the booster predicts on one thread. With XGBoost's default, OpenMP's threads spin on the
      other core after every one-row prediction: half of the request's CPU, and the core the
      event loop and a second scoring thread need;
    - the records go straight to the booster's matrix (``FeatureEncoding.encode_records``),
      without a request frame and pandas' per-column encoding;
    - pyfunc's schema enforcement is not repeated: each request was validated against the
      signature already (``validate_rows``)."""

    def via_pyfunc(records: list[dict]) -> np.ndarray:
        return np.asarray(model.predict(records_frame(records, encoding)))

    try:
        inner = model.unwrap_python_model()
    except Exception:  # not a PythonModel (a flavor's own pyfunc): pyfunc's predict
        return via_pyfunc
    # by name: MLflow unpickles the class each version logged, by value (its own code)
    kind = type(inner)
    own = (kind.__module__, kind.__qualname__) == (
        ProbabilityModel.__module__,
        ProbabilityModel.__qualname__,
    )
    if not own or not set(inner.encoding.columns) <= set(encoding.columns):
        # another model, or a signature without one of the model's columns: pyfunc says so
        return via_pyfunc
    inner.booster.set_param({"nthread": 1})  # this gateway's own copy of the model
    # the version carries the code it was logged with: this code's encoding of its columns
    # and levels is used only if it scores a probe exactly as the version's own predict does
    mine = FeatureEncoding(tuple(inner.encoding.columns), dict(inner.encoding.categories))
    probe = probe_records(mine)
    own_scores = np.asarray(inner.predict(None, records_frame(probe, encoding)), dtype="float64")
    if not np.array_equal(predict(inner.booster, mine.encode_records(probe)), own_scores):
        log.warning(
            "the fast scorer disagrees with the model's own predict on a probe: "
            "the version's own predict scores its requests"
        )
        return lambda records: np.asarray(inner.predict(None, records_frame(records, encoding)))
    return lambda records: predict(inner.booster, mine.encode_records(records))


def probe_records(encoding: FeatureEncoding) -> list[dict[str, object]]:
    """Records that reach every categorical level, an unseen level, missing values and a
    spread of numbers: what a scorer is compared on before it serves."""
    width = max([len(levels) for levels in encoding.categories.values()] + [1]) + 2
    records = []
    for k in range(width):
        record: dict[str, object] = {}
        for j, column in enumerate(encoding.columns):
            levels = list(encoding.categories.get(column, ()))
            if column in encoding.categories:
                options = [*levels, "an unseen level", None]
                record[column] = options[k % len(options)]
            else:
                record[column] = None if (k + j) % 5 == 4 else float((k * 7 + j * 3) % 50)
        records.append(record)
    return records


@dataclass(frozen=True)
class Scored:
    """One request's answer, and what the inference log keeps of it."""

    served: str
    model_name: str
    model_version: str
    feature_time: dt.datetime
    keys: list[object]
    features: list[dict[str, object]]  # the model's inputs per record, after overrides
    predictions: list[float]
    misses: list[list[str]]

    def response(self) -> dict[str, object]:
        return InvocationResponse(
            predictions=self.predictions,
            served_model_name=self.served,
            lookup_missed=[bool(m) for m in self.misses],
            lookup_missed_tables=self.misses,
        ).model_dump()


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


@dataclass
class Gateway:
    endpoint_name: str
    configs: LocalEndpointDeployer
    registry: Registry
    store: OnlineStore
    token: str | None = None
    clock: str = "data"
    max_rows: int = MAX_ROWS
    max_body_bytes: int = MAX_BODY_BYTES
    deployment: Deployment | None = None
    last_error: str | None = None
    _rng: random.Random = field(default_factory=random.Random)
    _clock_cache: tuple[float, dt.datetime] | None = None
    _published: dict[str, object] | None = None  # the publication the clock was read at
    _attempted: tuple[int, int, str] | None = None  # size, mtime, sha256 last loaded or tried
    # the serving-endpoints API's view: a config accepted and not yet loaded, the last load's
    # outcome, how many configs have served, when the last one started to
    pending: Endpoint | None = None
    update_failed: bool = False
    config_version: int = 0
    updated_ms: int = 0
    _reload: threading.Lock = field(default_factory=threading.Lock)
    _accepting: threading.Lock = field(default_factory=threading.Lock)
    inference_log: InferenceLogger | None = None  # every answer, written off the request path
    shadow_copies: ShadowCopies | None = None  # the shadow process (gateway_for sets it)

    # -- loading ---------------------------------------------------------------------------
    def load(self, raw: bytes) -> Deployment:
        """Parse, check and load everything before anything is swapped in."""
        path = self.configs.path(self.endpoint_name)
        endpoint = Endpoint.model_validate_json(raw)
        problems = route_problems(endpoint)
        if problems:
            raise ValueError(f"{path}: " + "; ".join(problems))
        models, inputs = {}, {}
        for entity in endpoint.config.served_entities:
            model = self.registry.load(entity.entity_name, entity.entity_version)
            models[entity.name] = model
            schema = model.metadata.get_input_schema()
            inputs[entity.name] = {c["name"]: c["type"] for c in schema.to_dict()} if schema else {}
        return Deployment(endpoint, models, inputs)

    def reload_if_changed(self) -> bool:
        """Load the config file if its content changed since it was last loaded or tried.

        Keyed on size, modification time and a hash of the bytes read: a writer that replaces
        the file within the clock's resolution (same mtime) is still seen. The bytes hashed are
        the bytes parsed, so a file changing under the read cannot be half-seen. One load at a
        time (the watcher and an API update may both ask)."""
        with self._reload:
            target = self.pending  # an accepted config, already in the file: done after this
            try:
                return self._reload_if_changed()
            finally:
                if target is not None and self.pending is target:
                    self.pending = None

    def _reload_if_changed(self) -> bool:
        path = self.configs.path(self.endpoint_name)
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                raw = handle.read()
        except FileNotFoundError:
            asset = "/".join(ENDPOINTS[self.endpoint_name].endpoint_config_key)
            self.last_error = f"{path} does not exist: materialize {asset}."
            return False
        key = (stat.st_size, stat.st_mtime_ns, hashlib.sha256(raw).hexdigest())
        if key == self._attempted:
            return False  # loaded already, or failed to load: wait for the file to change
        self._attempted = key
        try:
            loaded = self.load(raw)
        except Exception as exc:  # keep serving the old models; /ready reports why
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.update_failed = True
            log.error("config %s not loaded, still serving the previous one: %s", path, exc)
            return False
        self.deployment, self.last_error = loaded, None  # one assignment: requests see old or new
        self.update_failed = False
        self.config_version += 1
        self.updated_ms = int(time.time() * 1000)
        log.info("serving %s", loaded.endpoint.shares())
        # the loaded models are hundreds of thousands of long-lived objects: moved out of the
        # collector's reach, a full collection no longer walks them mid-request (it paused
        # answers for 200-300 ms). Unfrozen first, so that the replaced deployment's cycles are
        # collected now: one such pause per config change, on the watcher's thread.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        return True

    def watch(self, poll_seconds: float = 1.0) -> threading.Thread:
        """Each poll: a changed config is loaded, and the data clock follows the store."""

        def loop() -> None:
            while True:
                time.sleep(poll_seconds)
                self.reload_if_changed()
                self.refresh_clock()

        thread = threading.Thread(target=loop, name="config-watcher", daemon=True)
        thread.start()
        return thread

    # -- the serving-endpoints API ------------------------------------------------------------
    def accept(self, endpoint: Endpoint) -> None:
        """Validate a config as the config asset's checks do, write it, and load it in the
        background. Raises ``RequestError`` (400, 409) and changes nothing when it cannot."""
        with self._accepting:
            if self.pending is not None:
                raise RequestError(
                    f"Endpoint {self.endpoint_name!r} has a config update in progress; retry "
                    "when state.config_update is NOT_UPDATING.",
                    status=409,
                )
            problems = config_problems(endpoint, self.registry, SERVABLE_INPUTS, REQUEST_KEY_TYPES)
            if problems:
                raise RequestError(
                    "The config cannot be served; the current one keeps serving: "
                    + "; ".join(problems)
                    + "."
                )
            self.pending = endpoint
            try:
                self.configs.deploy(endpoint)
            except BaseException:
                self.pending = None
                raise
        threading.Thread(target=self.reload_if_changed, name="config-update", daemon=True).start()

    def exists(self) -> bool:
        return self.deployment is not None or self.configs.path(self.endpoint_name).exists()

    def describe(self, base_url: str) -> dict[str, object]:
        """``ServingEndpointDetailed``: what serves, what is pending, the two states."""
        deployment, pending = self.deployment, self.pending
        if pending is not None:
            update = "IN_PROGRESS"
        elif self.update_failed:
            update = "UPDATE_FAILED"
        else:
            update = "NOT_UPDATING"
        body: dict[str, object] = {
            "name": self.endpoint_name,
            "id": hashlib.sha256(self.endpoint_name.encode()).hexdigest()[:32],
            "creator": "ml_assets gateway",
            "last_updated_timestamp": self.updated_ms,
            "state": {"ready": "READY" if deployment else "NOT_READY", "config_update": update},
            "endpoint_url": f"{base_url}/serving-endpoints/{self.endpoint_name}/invocations",
        }
        if deployment is not None:
            body["config"] = _config_output(deployment.endpoint.config, self.config_version)
        if pending is not None:
            body["pending_config"] = _config_output(
                pending.config, self.config_version + 1, "DEPLOYMENT_CREATING"
            )
        if self.last_error and update == "UPDATE_FAILED":
            body["state_message"] = self.last_error
        return body

    # -- requests --------------------------------------------------------------------------
    def as_of(self) -> dt.datetime:
        """The request time: the wall clock, or the newest feature time in the store, read at
        most every ``CLOCK_CACHE_SECONDS`` on the request path (the watcher refreshes it each
        poll, so a publish is seen within a poll and a request rarely pays for the query)."""
        if self.clock == "wall":
            return dt.datetime.now(dt.UTC)
        cached = self._clock_cache
        if cached is None or time.monotonic() - cached[0] > CLOCK_CACHE_SECONDS:
            if self.refresh_clock() is None:
                raise RequestError("The online store holds no features yet.", status=503)
            cached = self._clock_cache
        return cached[1]

    def refresh_clock(self) -> dt.datetime | None:
        """Re-read the data clock from the store (None when it is empty or unreadable). The
        newest feature time is a scan of the table, so it is read again only when the store's
        publication record of the table changed (a key lookup)."""
        if self.clock == "wall":
            return None
        try:
            published = self.store.publication(user_activity.CONTRACT)
            cached = self._clock_cache
            if cached is not None and published is not None and published == self._published:
                self._clock_cache = (time.monotonic(), cached[1])
                return cached[1]
            newest = self.store.newest_feature_time(user_activity.CONTRACT)
        except Exception:  # the request path raises its own error; the watcher keeps going
            log.exception("the online store's newest feature time could not be read")
            return None
        if newest is not None:
            self._clock_cache, self._published = (time.monotonic(), newest), published
        return newest

    def authorized(self, header: str | None) -> bool:
        """``Authorization: Bearer <token>``; the scheme is case-insensitive (RFC 7235)."""
        if self.token is None:
            return True
        scheme, _, credentials = (header or "").strip().partition(" ")
        same = hmac.compare_digest(credentials.strip().encode(), self.token.encode())
        return same and scheme.lower() == "bearer"

    def invoke(self, body: bytes, request_id: str | None) -> dict[str, object]:
        return self.score(body, request_id).response()

    def score(
        self,
        body: bytes,
        request_id: str | None,
        served: str | None = None,
        deployment: Deployment | None = None,
        as_of: dt.datetime | None = None,
    ) -> Scored:
        """The request scored by the served entity its route picks (or ``served``), with the
        features as of the request time (``as_of``, default the clock's now)."""
        deployment = deployment or self.deployment  # whatever reloads meanwhile
        if deployment is None:
            raise RequestError(f"Not ready: {self.last_error or 'models are loading'}", status=503)
        served = served or choose_route(deployment.endpoint, request_id, self._rng)
        entity = deployment.entities[served]
        signature = deployment.inputs[served]
        frame = validate_rows(
            parse_invocation(body, max_rows=self.max_rows), REQUEST_KEY_TYPES, signature
        )
        keys = frame[ENTITY_KEY].tolist()
        unique = list(dict.fromkeys(keys))
        rows = {str(c.name): self.store.read(c, unique) for c in LOOKUP_CONTRACTS}
        as_of = as_of or self.as_of()
        records = user_records(keys, as_of, rows)
        overrides = [c for c in frame.columns if c in signature]
        if overrides:  # a given, non-null value replaces the looked-up one
            for record, given in zip(records, frame[overrides].to_dict("records"), strict=True):
                record.update({c: v for c, v in given.items() if not pd.isna(v)})
        # a miss is a lookup that matched no row: overrides give values, not matched times
        misses = [lookup_misses(record) for record in records]
        encoding = deployment.encodings[served]
        scores = deployment.scorers[served](records)
        return Scored(
            served=served,
            model_name=entity.entity_name,
            model_version=entity.entity_version,
            feature_time=as_of,
            keys=keys,
            features=[{c: r.get(c) for c in encoding.columns} for r in records],
            predictions=[float(s) for s in scores],
            misses=misses,
        )

    def copy_to_shadows(
        self,
        body: bytes,
        request_id: str,
        client_id: str | None,
        received: dt.datetime,
        as_of: dt.datetime,
    ) -> None:
        """Queue a copy of the request for the shadow process when the config has a shadow,
        with the time its answer's features were looked up as of (the shadow scores the same
        request time). Without an inference log a shadow's answer would go nowhere: nothing
        is copied."""
        deployment = self.deployment
        if (
            deployment is None
            or self.inference_log is None
            or self.shadow_copies is None
            or not deployment.endpoint.shadows()
        ):
            return
        self.shadow_copies.submit(
            (body, request_id, client_id, received.isoformat(), as_of.isoformat())
        )

    def score_shadows(
        self,
        body: bytes,
        request_id: str,
        client_id: str | None,
        received: dt.datetime,
        as_of: dt.datetime | None = None,
    ) -> bool:
        """In the shadow process: each shadow entity scores the copy as of the answer's
        request time; its answer goes to the inference log only (``shadow``), under the
        request's id suffixed with ':' and the entity. True when every shadow answered."""
        deployment = self.deployment
        if deployment is None:
            return False
        ok = True
        for served in deployment.endpoint.shadows():
            started = time.perf_counter()
            shadow_id = f"{request_id}:{served}"
            try:
                scored = self.score(body, None, served=served, deployment=deployment, as_of=as_of)
            except RequestError as exc:
                self.log_answer(
                    shadow_id,
                    client_id,
                    received,
                    started,
                    exc.status,
                    error=str(exc)[:500],
                    shadow=True,
                )
                ok = False
                continue
            except Exception as exc:  # a shadow's failure is its own: logged and counted
                log.exception("shadow %s failed on request %s", served, request_id)
                self.log_answer(
                    shadow_id,
                    client_id,
                    received,
                    started,
                    500,
                    error=f"shadow failed: {type(exc).__name__}: {exc}"[:500],
                    shadow=True,
                )
                ok = False
                continue
            self.log_answer(shadow_id, client_id, received, started, 200, scored, shadow=True)
        return ok

    def log_answer(
        self,
        request_id: str,
        client_id: str | None,
        received: dt.datetime,
        started: float,
        status: int,
        scored: Scored | None = None,
        error: str | None = None,
        shadow: bool = False,
    ) -> None:
        """Queue the answer for the inference log (never blocks; see InferenceLogger)."""
        if self.inference_log is None:
            return
        answer = Answer(
            request_id=request_id,
            client_request_id=None if client_id is None else client_id[:200],
            request_time=received,
            endpoint_name=self.endpoint_name,
            status_code=status,
            execution_time_ms=(time.perf_counter() - started) * 1000,
            error=error,
            shadow=shadow,
        )
        if scored is not None:
            answer = dataclasses.replace(
                answer,
                feature_time=scored.feature_time,
                served_entity_name=scored.served,
                model_name=scored.model_name,
                model_version=scored.model_version,
                user_ids=scored.keys,
                features=scored.features,
                predictions=scored.predictions,
                lookup_missed=[bool(m) for m in scored.misses],
            )
        self.inference_log.log(answer)

    def openapi(self) -> dict[str, object]:
        """The OpenAPI document of what this gateway serves now: the request rows are the
        served entities' common inputs, typed by their signatures."""
        model = ENDPOINTS[self.endpoint_name]
        deployment = self.deployment
        signatures = [] if deployment is None else list(deployment.inputs.values())
        common = (
            {k: v for k, v in signatures[0].items() if all(k in s for s in signatures)}
            if signatures
            else {}
        )
        record = record_model(REQUEST_KEY_TYPES, common)
        return openapi_document(
            endpoint=self.endpoint_name,
            title=f"{self.endpoint_name} serving endpoint (ml_assets gateway)",
            description=f"{model.use_case} Served entities: "
            + (
                ", ".join(f"{k} {v}%" for k, v in deployment.endpoint.shares().items())
                if deployment
                else "none loaded yet"
            )
            + ". Each row names a user; the features come from the online store, and any "
            "model input may be given to override its looked-up value.",
            request=request_model(record, self.max_rows),
            token_required=self.token is not None,
            version=str(self.config_version),
        )


def _config_output(
    config: EndpointCoreConfig, version: int, deployment: str = "DEPLOYMENT_READY"
) -> dict[str, object]:
    """``EndpointCoreConfigOutput``: the served entities with their deployment state."""
    body = config.model_dump(exclude_none=True)
    for entity in body["served_entities"]:
        entity["state"] = {"deployment": deployment}
    body["config_version"] = version
    return body


def _error(code: str, message: str, status: int, **headers: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status, headers=headers or None)


def _unauthenticated() -> JSONResponse:
    return _error(
        "UNAUTHENTICATED", "Missing or wrong bearer token.", 401, **{"WWW-Authenticate": "Bearer"}
    )


class BearerAuth:
    """Every path but the public ones needs the token: unknown paths too, so a caller without
    it cannot tell which endpoints exist."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app, self.gateway = app, gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] not in PUBLIC_PATHS
            and not self.gateway.authorized(Headers(scope=scope).get("authorization"))
        ):
            await _unauthenticated()(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes: from
    Content-Length before reading, or while streaming; what was read is then dropped."""
    declared = request.headers.get("content-length")
    too_large = (
        f"The body is larger than {limit} bytes, the most this gateway accepts "
        "(ML_ASSETS_SERVING_MAX_BODY_BYTES). Send fewer rows per request."
    )
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(f"Content-Length must be a number of bytes, got {declared!r}.")
        if int(declared) > limit:
            raise RequestError(too_large, status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(too_large, status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _invalid(exc: ValidationError) -> str:
    """Pydantic's errors as one line: where, what."""
    where = [".".join(str(p) for p in error["loc"]) + f": {error['msg']}" for error in exc.errors()]
    return "Invalid endpoint config: " + "; ".join(where[:20]) + "."


async def _json_object(request: Request, limit: int) -> dict | JSONResponse:
    """The body as a JSON object, or the 4xx answer that says why it is not one."""
    try:
        raw = await read_body(request, limit)
    except RequestError as exc:
        return _error(
            "REQUEST_TOO_LARGE" if exc.status == 413 else "BAD_REQUEST", str(exc), exc.status
        )
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error("MALFORMED_REQUEST", f"The body is not JSON: {exc}.", 400)
    if not isinstance(body, dict):
        return _error("MALFORMED_REQUEST", "The body must be a JSON object.", 400)
    return body


def build_app(gateway: Gateway, scoring_threads: int = SCORING_THREADS) -> Starlette:
    executor = ThreadPoolExecutor(max_workers=scoring_threads, thread_name_prefix="scoring")

    async def invocations(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name != gateway.endpoint_name:
            message = f"No endpoint {name[:100]!r}; this serves {gateway.endpoint_name!r}."
            return _error("RESOURCE_DOES_NOT_EXIST", message, 404)
        started, received = time.perf_counter(), dt.datetime.now(dt.UTC)
        client_id = request.headers.get("x-request-id")
        request_id = uuid.uuid4().hex  # the log's key; the client's id is logged beside it
        try:
            body = await read_body(request, gateway.max_body_bytes)
            # scoring runs on a small FIFO pool: the event loop keeps reading requests, and
            # under load they are served in arrival order (no starved connections)
            scored = await asyncio.get_running_loop().run_in_executor(
                executor, gateway.score, body, client_id
            )
        except RequestError as exc:
            code = {413: "REQUEST_TOO_LARGE"}.get(exc.status, "BAD_REQUEST")
            if exc.status >= 500:
                code = "TEMPORARILY_UNAVAILABLE"
            gateway.log_answer(
                request_id, client_id, received, started, exc.status, error=str(exc)[:500]
            )
            return _error(code, str(exc), exc.status)
        answer = scored.response()
        gateway.log_answer(request_id, client_id, received, started, 200, scored)
        gateway.copy_to_shadows(body, request_id, client_id, received, scored.feature_time)
        headers = {"served-model-name": scored.served, "x-request-id": request_id}
        return JSONResponse(answer, headers=headers)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> JSONResponse:
        deployment = gateway.deployment
        body = {
            "ready": deployment is not None,
            "served_entities": {} if deployment is None else deployment.endpoint.shares(),
            "last_reload_error": gateway.last_error,
            "clock": gateway.clock,
        }
        with contextlib.suppress(RequestError):  # the request time a request would get now
            body["as_of"] = gateway.as_of().isoformat()
        if gateway.inference_log is not None:
            body["inference_log"] = gateway.inference_log.stats()
        if deployment is not None and deployment.endpoint.shadows() and gateway.shadow_copies:
            body["shadow"] = gateway.shadow_copies.stats()
        return JSONResponse(body, status_code=200 if deployment is not None else 503)

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def unknown(name: str) -> JSONResponse:
        message = f"No endpoint {name[:100]!r}; this gateway serves {gateway.endpoint_name!r}."
        return _error("RESOURCE_DOES_NOT_EXIST", message, 404)

    async def list_endpoints(request: Request) -> JSONResponse:
        listed = [gateway.describe(base_url(request))] if gateway.exists() else []
        return JSONResponse({"endpoints": listed})

    async def get_endpoint(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name != gateway.endpoint_name or not gateway.exists():
            return unknown(name)
        return JSONResponse(gateway.describe(base_url(request)))

    async def change(request: Request, name: str, config: object) -> JSONResponse:
        try:
            endpoint = Endpoint.model_validate({"name": name, "config": config})
            await asyncio.get_running_loop().run_in_executor(executor, gateway.accept, endpoint)
        except ValidationError as exc:
            return _error("INVALID_PARAMETER_VALUE", _invalid(exc), 400)
        except RequestError as exc:
            code = "RESOURCE_CONFLICT" if exc.status == 409 else "INVALID_PARAMETER_VALUE"
            return _error(code, str(exc), exc.status)
        return JSONResponse(gateway.describe(base_url(request)))

    async def create_endpoint(request: Request) -> JSONResponse:
        body = await _json_object(request, gateway.max_body_bytes)
        if isinstance(body, JSONResponse):
            return body
        name = body.get("name")
        if name != gateway.endpoint_name:
            message = (
                f"This gateway serves one endpoint, {gateway.endpoint_name!r} (make serve "
                f"--endpoint NAME for another); cannot create {str(name)[:100]!r}."
            )
            return _error("INVALID_PARAMETER_VALUE", message, 400)
        if gateway.exists():
            message = f"Endpoint with name '{name}' already exists; update its config instead."
            return _error("RESOURCE_ALREADY_EXISTS", message, 409)
        return await change(request, name, body.get("config"))

    async def update_config(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name != gateway.endpoint_name or not gateway.exists():
            return unknown(name)
        body = await _json_object(request, gateway.max_body_bytes)
        if isinstance(body, JSONResponse):
            return body
        return await change(request, name, body)

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(gateway.openapi())

    async def home(request: Request) -> HTMLResponse:
        return HTMLResponse(home_page(gateway, base_url(request)))

    async def no_host_metadata(request: Request) -> JSONResponse:
        return _error("RESOURCE_DOES_NOT_EXIST", "No host metadata: this is not a workspace.", 404)

    api = "/api/2.0/serving-endpoints"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        loop = asyncio.get_running_loop()
        if gateway.shadow_copies is not None:  # the shadow process logs what it has queued
            await loop.run_in_executor(None, gateway.shadow_copies.close)
        if gateway.inference_log is not None:  # a clean shutdown loses no logged answer
            await loop.run_in_executor(None, gateway.inference_log.close)

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/serving-endpoints/{name}/invocations", invocations, methods=["POST"]),
            Route(api, list_endpoints, methods=["GET"]),
            Route(api, create_endpoint, methods=["POST"]),
            Route(api + "/{name}", get_endpoint, methods=["GET"]),
            Route(api + "/{name}/config", update_config, methods=["PUT"]),
            Route("/.well-known/databricks-config", no_host_metadata),
            Route("/health", health),
            Route("/ready", ready),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/", home, methods=["GET"]),
        ],
    )
    app.add_middleware(BearerAuth, gateway=gateway)
    return app


def home_page(gateway: Gateway, base_url: str) -> str:
    """What a person sees at ``/``: what the endpoint serves, its state, how to call it."""
    model = ENDPOINTS[gateway.endpoint_name]
    deployment = gateway.deployment
    e = html.escape
    if deployment is None:
        served = f"<p><b>Not ready</b>: {e(gateway.last_error or 'models are loading')}</p>"
    else:
        shares = deployment.endpoint.shares()
        rows = "".join(
            f"<tr><td>{e(entity.name)}</td><td>{e(entity.entity_name)}</td>"
            f"<td>{e(str(entity.entity_version))}</td><td>{shares.get(entity.name, 0)} %</td></tr>"
            for entity in deployment.endpoint.config.served_entities
        )
        served = (
            "<table><tr><th>served entity</th><th>registered model</th><th>version</th>"
            f"<th>traffic</th></tr>{rows}</table>"
        )
    invocations = f"{base_url}/serving-endpoints/{gateway.endpoint_name}/invocations"
    api = f"/api/2.0/serving-endpoints/{gateway.endpoint_name}"
    auth = " -H 'Authorization: Bearer $TOKEN'" if gateway.token else ""
    example = (
        f"curl -s {invocations}{auth} -H 'Content-Type: application/json' \\\n"
        """  -d '{"dataframe_records": [{"user_id": 1}, {"user_id": 2, "events_7d": 0}]}'"""
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8">
<title>{e(gateway.endpoint_name)}: ml_assets serving gateway</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} td,th{{padding:.2em .8em;
text-align:left}} pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}</style></head><body>
<h1>Serving endpoint <code>{e(gateway.endpoint_name)}</code></h1>
<p>{e(model.use_case)}</p>
<p>Model <code>{e(model.name)}</code>, output <code>{e(model.output)}</code>.
Each request row names a user (<code>{e(ENTITY_KEY)}</code>); the features come from the
online store at the request time, and any model input may be given to override its looked-up
value. Each answer says per row whether the online lookup missed
(<code>lookup_missed</code>): such a user is scored on the training set's defaults.</p>
<h2>Serving now</h2>{served}
<h2>Call it</h2><pre>{e(example)}</pre>
<p>Formats: <code>dataframe_records</code>, <code>dataframe_split</code>, <code>inputs</code>
(at most {gateway.max_rows} rows, {gateway.max_body_bytes} bytes).</p>
<h2>More</h2><ul>
<li><a href="/openapi.json">/openapi.json</a>: the OpenAPI document (request rows typed by the
served signature)</li>
<li><a href="/ready">/ready</a>: loaded entities and the last reload error</li>
<li><a href="{e(api)}">{e(api)}</a>: the endpoint as Databricks' serving-endpoints API
describes it</li></ul>
</body></html>
"""


def gateway_for(settings: Settings, endpoint_name: str = DEFAULT_ENDPOINT) -> Gateway:
    if endpoint_name not in ENDPOINTS:
        raise ValueError(
            f"No declared model serves an endpoint named {endpoint_name!r}; the endpoints are "
            f"{sorted(ENDPOINTS)} (lib/models/catalog.MODELS)."
        )
    resources = build_resources(settings)
    deployer = resources["endpoint_deployer"]
    log_dir = deployer.inference_log_dir(endpoint_name) if settings.serving_inference_log else None
    return Gateway(
        endpoint_name=endpoint_name,
        configs=resources["endpoint_deployer"],
        registry=resources["model_registry"].open(),
        store=resources["online_store"].process_config_and_initialize(),  # resolves EnvVar
        token=settings.serving_token,
        clock=settings.serving_clock,
        max_body_bytes=settings.serving_max_body_bytes,
        inference_log=None if log_dir is None else InferenceLogger(log_dir).start(),
        shadow_copies=ShadowCopies(settings, endpoint_name),
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--endpoint",
        default=DEFAULT_ENDPOINT,
        choices=sorted(ENDPOINTS),
        help="the endpoint to serve: a declared model's endpoint",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    gateway = gateway_for(current_settings(), args.endpoint)
    gateway.reload_if_changed()
    gateway.watch()
    log.info(
        "gateway for %s on http://%s:%d (auth %s, clock %s, inference log %s)",
        args.endpoint,
        args.host,
        args.port,
        "on" if gateway.token else "off",
        gateway.clock,
        gateway.inference_log.root if gateway.inference_log else "off",
    )
    uvicorn.run(build_app(gateway), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
