"""The gateway's HTTP face: the routes of Databricks' serving REST API it answers, the bearer
token, bodies read within their limit, and the page at ``/``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ml_assets.lib.redact import redact_url
from ml_assets.lib.serving.endpoint import Endpoint
from ml_assets.lib.serving.requests import RequestError, load_json
from ml_assets.lib.training_sets.users import ENTITY_KEY
from ml_assets.programs.gateway.core import Gateway
from ml_assets.programs.gateway.defaults import ENDPOINTS, PUBLIC_PATHS, SCORING_THREADS

log = logging.getLogger(__name__)


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
        body = load_json(raw)
    except RequestError as exc:
        return _error("MALFORMED_REQUEST", str(exc), exc.status)
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
        except ClientDisconnect:  # the caller went away mid-body: nobody to answer
            raise
        except Exception as exc:  # the gateway's own failure (the store, a model): a logged 500
            reason = f"{type(exc).__name__}: {redact_url(str(exc))}"[:500]
            log.error("request %s failed: %s", request_id, reason)
            gateway.log_answer(request_id, client_id, received, started, 500, error=reason)
            message = f"The gateway failed to answer request {request_id}; its log says why."
            return _error("INTERNAL_ERROR", message, 500, **{"x-request-id": request_id})
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
