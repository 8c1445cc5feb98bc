"""The gateway's defaults and limits, and the endpoints it can serve."""

from __future__ import annotations

from ml_assets.lib.models.catalog import MODELS

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
