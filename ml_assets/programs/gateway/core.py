"""The gateway: the endpoint config it serves and reloads, the serving-endpoints API's view of
it, the data clock, scoring a request and logging the answer."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import hashlib
import hmac
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field

import pandas as pd

from ml_assets.deployments import Settings, build_resources
from ml_assets.lib.features import user_activity
from ml_assets.lib.redact import redact_url
from ml_assets.lib.registry.store import Registry
from ml_assets.lib.serving.api import openapi_document, record_model, request_model
from ml_assets.lib.serving.endpoint import Endpoint, EndpointCoreConfig, route_problems
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
from ml_assets.programs.gateway.defaults import (
    CLOCK_CACHE_SECONDS,
    DEFAULT_ENDPOINT,
    ENDPOINTS,
    MAX_BODY_BYTES,
    MAX_ROWS,
)
from ml_assets.programs.gateway.scoring import Deployment, Scored
from ml_assets.programs.gateway.shadows import ShadowCopies
from ml_assets.resources.online_store import OnlineStore
from ml_assets.resources.serving import LocalEndpointDeployer

log = logging.getLogger(__name__)


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
                reason = f"{type(exc).__name__}: {redact_url(str(exc))}"
                log.error("shadow %s failed on request %s: %s", served, request_id, reason)
                self.log_answer(
                    shadow_id,
                    client_id,
                    received,
                    started,
                    500,
                    error=f"shadow failed: {reason}"[:500],
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
