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
any parsing; a client's mistake is a 4xx with a message naming the field, never a 500. The
gateway's own failure (the online store unreachable, a model raising) is a 500
``INTERNAL_ERROR`` naming the request id, logged like any answer, URL passwords redacted.

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
import logging

from ml_assets.deployments import current_settings
from ml_assets.programs.gateway.app import build_app, home_page
from ml_assets.programs.gateway.core import Gateway, gateway_for
from ml_assets.programs.gateway.defaults import DEFAULT_ENDPOINT, ENDPOINTS
from ml_assets.programs.gateway.scoring import Deployment, Scored, scorer
from ml_assets.programs.gateway.shadows import ShadowCopies

__all__ = [
    "Deployment",
    "Gateway",
    "Scored",
    "ShadowCopies",
    "build_app",
    "gateway_for",
    "home_page",
    "main",
    "scorer",
]

log = logging.getLogger(__name__)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m ml_assets.programs.gateway", description=__doc__.split("\n\n")[0]
    )
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
