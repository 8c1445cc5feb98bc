"""``make serve``: the local serving gateway that honours the endpoint config.

It loads the served entities named in ``$ML_ASSETS_HOME/serving/<endpoint>.json`` (MLflow
pyfunc models by registered version) and answers Databricks-style invocations:

    POST /serving-endpoints/{name}/invocations   dataframe_records | dataframe_split | inputs
    GET  /health                                 the process is up
    GET  /ready                                  models are loaded (503 until they are)

A request carries entity keys (``user_id``) and may override features. The features come
from the online store through the training set's lookups (``lib/serving/churn.py``), at the
request time: the wall clock, or for the replayed demo data the newest feature time in the
store (``ML_ASSETS_SERVING_CLOCK``). Each request goes to one served entity by traffic share,
deterministically for an ``X-Request-Id``; the answer says which.

The config file is watched: a change is loaded in the background and swapped in whole, so
requests in flight finish on the models they started with; if the new config is invalid or
a model fails to load, the gateway keeps serving the old ones and ``/ready`` reports the
error. With ``ML_ASSETS_SERVING_TOKEN`` set, invocations need ``Authorization: Bearer
<token>`` (compared in constant time).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hmac
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import mlflow
import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ml_assets.deployments import Settings, build_resources, current_settings
from ml_assets.lib.features import user_activity
from ml_assets.lib.models.churn_classifier import ENCODING
from ml_assets.lib.models.encoding import records_frame
from ml_assets.lib.serving.churn import LOOKUP_CONTRACTS, REQUEST_KEY_TYPES, churn_records
from ml_assets.lib.serving.endpoint import Endpoint, route_problems
from ml_assets.lib.serving.requests import (
    RequestError,
    choose_route,
    parse_invocation,
    validate_rows,
)
from ml_assets.lib.training_sets.churn import ENTITY_KEY
from ml_assets.names import CHURN_ENDPOINT
from ml_assets.resources.mlflow import MlflowTracking
from ml_assets.resources.online_store import OnlineStore
from ml_assets.resources.serving import LocalEndpointConfigs

log = logging.getLogger("ml_assets.gateway")
MAX_ROWS = 1000
SCORING_THREADS = 2  # one per core: scoring holds the GIL most of the time
CLOCK_CACHE_SECONDS = 5.0


@dataclass
class Deployment:
    endpoint: Endpoint
    models: dict[str, object]  # served entity name -> PyFuncModel
    inputs: dict[str, dict[str, str]]  # served entity name -> signature input name -> type


@dataclass
class Gateway:
    endpoint_name: str
    configs: LocalEndpointConfigs
    tracking: MlflowTracking
    store: OnlineStore
    token: str | None = None
    clock: str = "data"
    max_rows: int = MAX_ROWS
    deployment: Deployment | None = None
    last_error: str | None = None
    _rng: random.Random = field(default_factory=random.Random)
    _clock_cache: tuple[float, dt.datetime] | None = None
    _attempted: float | None = None  # mtime of the config file last loaded or tried

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> Deployment:
        """Parse, check and load everything before anything is swapped in."""
        path = self.configs.path(self.endpoint_name)
        endpoint = self.configs.read(self.endpoint_name)
        problems = route_problems(endpoint)
        if problems:
            raise ValueError(f"{path}: " + "; ".join(problems))
        self.tracking.configure()
        models, inputs = {}, {}
        for entity in endpoint.config.served_entities:
            uri = f"models:/{entity.entity_name}/{entity.entity_version}"
            model = mlflow.pyfunc.load_model(uri)
            models[entity.name] = model
            schema = model.metadata.get_input_schema()
            inputs[entity.name] = {c["name"]: c["type"] for c in schema.to_dict()} if schema else {}
        return Deployment(endpoint, models, inputs)

    def reload_if_changed(self) -> bool:
        path = self.configs.path(self.endpoint_name)
        try:
            modified = path.stat().st_mtime
        except FileNotFoundError:
            self.last_error = f"{path} does not exist: materialize serving/churn_endpoint_config."
            return False
        if modified == self._attempted:
            return False  # loaded already, or failed to load: wait for the file to change
        self._attempted = modified
        try:
            loaded = self.load()
        except Exception as exc:  # keep serving the old models; /ready reports why
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("config %s not loaded, still serving the previous one: %s", path, exc)
            return False
        self.deployment, self.last_error = loaded, None  # one assignment: requests see old or new
        log.info("serving %s", loaded.endpoint.shares())
        return True

    def watch(self, poll_seconds: float = 1.0) -> threading.Thread:
        def loop() -> None:
            while True:
                time.sleep(poll_seconds)
                self.reload_if_changed()

        thread = threading.Thread(target=loop, name="config-watcher", daemon=True)
        thread.start()
        return thread

    # -- requests --------------------------------------------------------------------------
    def as_of(self) -> dt.datetime:
        if self.clock == "wall":
            return dt.datetime.now(dt.UTC)
        now = time.monotonic()
        if self._clock_cache is None or now - self._clock_cache[0] > CLOCK_CACHE_SECONDS:
            newest = self.store.newest_feature_time(user_activity.CONTRACT)
            if newest is None:
                raise RequestError("The online store holds no features yet.", status=503)
            self._clock_cache = (now, newest)
        return self._clock_cache[1]

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        expected = f"Bearer {self.token}".encode()
        return hmac.compare_digest((header or "").encode(), expected)

    def invoke(self, body: bytes, request_id: str | None) -> dict[str, object]:
        deployment = self.deployment  # this request's models, whatever reloads meanwhile
        if deployment is None:
            raise RequestError(f"Not ready: {self.last_error or 'models are loading'}", status=503)
        served = choose_route(deployment.endpoint, request_id, self._rng)
        signature = deployment.inputs[served]
        frame = validate_rows(
            parse_invocation(body, max_rows=self.max_rows), REQUEST_KEY_TYPES, signature
        )
        keys = frame[ENTITY_KEY].tolist()
        unique = list(dict.fromkeys(keys))
        rows = {str(c.name): self.store.read(c, unique) for c in LOOKUP_CONTRACTS}
        records = churn_records(keys, self.as_of(), rows)
        overrides = [c for c in frame.columns if c in signature]
        if overrides:  # a given, non-null value replaces the looked-up one
            for record, given in zip(records, frame[overrides].to_dict("records"), strict=True):
                record.update({c: v for c, v in given.items() if not pd.isna(v)})
        inputs = records_frame(records, ENCODING)
        scores = np.asarray(deployment.models[served].predict(inputs))
        return {
            "predictions": [float(s) for s in scores],
            "served_model_name": served,
        }


def _shares(endpoint: Endpoint) -> dict[str, int]:
    return {
        r.served_model_name: r.traffic_percentage for r in endpoint.config.traffic_config.routes
    }


def build_app(gateway: Gateway, scoring_threads: int = SCORING_THREADS) -> Starlette:
    executor = ThreadPoolExecutor(max_workers=scoring_threads, thread_name_prefix="scoring")

    async def invocations(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if name != gateway.endpoint_name:
            return JSONResponse(
                {
                    "error_code": "RESOURCE_DOES_NOT_EXIST",
                    "message": f"No endpoint {name!r}; this serves {gateway.endpoint_name!r}.",
                },
                status_code=404,
            )
        if not gateway.authorized(request.headers.get("authorization")):
            return JSONResponse(
                {"error_code": "UNAUTHENTICATED", "message": "Missing or wrong bearer token."},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = await request.body()
        try:
            # scoring runs on a small FIFO pool: the event loop keeps reading requests, and
            # under load they are served in arrival order (no starved connections)
            answer = await asyncio.get_running_loop().run_in_executor(
                executor, gateway.invoke, body, request.headers.get("x-request-id")
            )
        except RequestError as exc:
            code = "BAD_REQUEST" if exc.status < 500 else "TEMPORARILY_UNAVAILABLE"
            return JSONResponse({"error_code": code, "message": str(exc)}, status_code=exc.status)
        return JSONResponse(answer, headers={"served-model-name": str(answer["served_model_name"])})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> JSONResponse:
        deployment = gateway.deployment
        body = {
            "ready": deployment is not None,
            "served_entities": {} if deployment is None else deployment.endpoint.shares(),
            "last_reload_error": gateway.last_error,
        }
        return JSONResponse(body, status_code=200 if deployment is not None else 503)

    return Starlette(
        routes=[
            Route("/serving-endpoints/{name}/invocations", invocations, methods=["POST"]),
            Route("/health", health),
            Route("/ready", ready),
        ]
    )


def gateway_for(settings: Settings, endpoint_name: str = CHURN_ENDPOINT) -> Gateway:
    resources = build_resources(settings)
    return Gateway(
        endpoint_name=endpoint_name,
        configs=resources["endpoint_configs"],
        tracking=resources["mlflow_tracking"],
        store=resources["online_store"],
        token=settings.serving_token,
        clock=settings.serving_clock,
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--endpoint", default=CHURN_ENDPOINT)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    gateway = gateway_for(current_settings(), args.endpoint)
    gateway.reload_if_changed()
    gateway.watch()
    log.info(
        "gateway for %s on http://%s:%d (auth %s, clock %s)",
        args.endpoint,
        args.host,
        args.port,
        "on" if gateway.token else "off",
        gateway.clock,
    )
    uvicorn.run(build_app(gateway), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
