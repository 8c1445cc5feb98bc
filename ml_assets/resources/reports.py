"""Where human-readable reports go: HTML files under ``$ML_ASSETS_HOME/reports/`` locally,
linked from the Dagster metadata of the asset that wrote them; on Databricks, files in a Unity
Catalog volume, uploaded through the Files API of ``databricks-sdk``."""

from __future__ import annotations

import io
import re
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath

import dagster as dg

from ml_assets.lib.files import write_atomically
from ml_assets.resources.databricks import workspace_client


class Reports(dg.ConfigurableResource, ABC):
    @abstractmethod
    def write(self, relative_path: str, html: str) -> str:
        """Store the report; returns where it went (a path or URL a person can open)."""


def _relative(relative_path: str) -> PurePosixPath:
    relative = PurePosixPath(relative_path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"A report path is relative and stays inside; found {relative_path!r}.")
    return relative


class LocalReports(Reports):
    directory: str

    def path(self, relative_path: str) -> Path:
        return Path(self.directory, *_relative(relative_path).parts)

    def write(self, relative_path: str, html: str) -> str:
        """Atomically: a browser refreshing the report never sees half of it."""
        return str(write_atomically(self.path(relative_path), html))


VOLUME_PATH = re.compile(r"^/Volumes/[a-z0-9_]+/[a-z0-9_]+/[a-z0-9_]+(/[A-Za-z0-9_.-]+)*$")


class DatabricksVolumeReports(Reports):
    """Reports in a Unity Catalog volume (``/Volumes/<catalog>/<schema>/<volume>/...``),
    uploaded with ``WorkspaceClient.files.upload``; the client is built on first use."""

    volume_path: str
    host: str | None = None
    token: str | None = None  # bind as dg.EnvVar("DATABRICKS_TOKEN")
    profile: str | None = None
    retry_timeout_seconds: int = 60

    def path(self, relative_path: str) -> str:
        if not VOLUME_PATH.match(self.volume_path):
            raise ValueError(
                f"volume_path {self.volume_path!r}: expected /Volumes/<catalog>/<schema>/<volume>"
            )
        return f"{self.volume_path.rstrip('/')}/{_relative(relative_path)}"

    def write(self, relative_path: str, html: str) -> str:
        target = self.path(relative_path)
        client = workspace_client(
            self.host, self.token, self.profile, retry_timeout_seconds=self.retry_timeout_seconds
        )
        client.files.upload(target, io.BytesIO(html.encode("utf-8")), overwrite=True)
        return target
