"""One way to build a Databricks workspace client, on first use, with short timeouts.

The SDK probes the host when its config is built (``GET /.well-known/databricks-config``), and
retries an unreachable host for minutes by default: resources call this when they are used,
never at definitions load, with ``retry_timeout_seconds`` bounding how long a wrong host hangs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient


def workspace_client(
    host: str | None,
    token: str | None,
    profile: str | None,
    *,
    http_timeout_seconds: int = 30,
    retry_timeout_seconds: int = 60,
) -> WorkspaceClient:
    """Credentials as the SDK reads them: ``host`` and ``token``, or a config ``profile``, or
    (all None) the SDK's own environment."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    config = Config(
        host=host,
        token=token,
        profile=profile,
        http_timeout_seconds=http_timeout_seconds,
        retry_timeout_seconds=retry_timeout_seconds,
        product="ml_assets",
        product_version="0.1.0",
    )
    return WorkspaceClient(config=config)
