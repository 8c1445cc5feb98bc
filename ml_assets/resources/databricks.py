"""One way to build a Databricks workspace client, on first use, with short timeouts.

The SDK probes the host when its config is built (``GET /.well-known/databricks-config``), and
retries an unreachable host for minutes by default: resources call this when they are used,
never at definitions load, with ``retry_timeout_seconds`` bounding how long a wrong host hangs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


class WorkspaceError(RuntimeError):
    """The workspace could not be reached or refused the credentials (the message says which
    setting to fix)."""


@contextmanager
def calling_workspace(
    host: str | None,
    profile: str | None,
    retry_timeout_seconds: int,
    *,
    needs: str,
    setting: str,
) -> Iterator[None]:
    """Around a resource's first call: an unreachable host or refused credentials become one
    ``WorkspaceError`` naming the setting to fix (``setting``) and what the token must allow
    (``needs``)."""
    from databricks.sdk.errors import PermissionDenied, Unauthenticated
    from requests.exceptions import ConnectionError as RequestsConnectionError

    where = host or (f"profile {profile!r}" if profile else "DATABRICKS_HOST")
    try:
        yield
    except (TimeoutError, RequestsConnectionError) as exc:
        raise WorkspaceError(
            f"Cannot reach the Databricks workspace at {where} ({type(exc).__name__}: "
            f"{exc}). Check {setting} (DATABRICKS_HOST or the profile) and the network; "
            f"retries stop after retry_timeout_seconds={retry_timeout_seconds}."
        ) from exc
    except (Unauthenticated, PermissionDenied) as exc:
        raise WorkspaceError(
            f"The workspace at {where} refused the credentials: {exc}. Set DATABRICKS_TOKEN "
            f"(or the profile's token) to {needs}."
        ) from exc
