"""Where human-readable reports go: HTML files under ``$ML_ASSETS_HOME/reports/`` locally,
linked from the Dagster metadata of the asset that wrote them. (On Databricks they would go
to a Unity Catalog volume.)"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath

import dagster as dg


class Reports(dg.ConfigurableResource, ABC):
    @abstractmethod
    def write(self, relative_path: str, html: str) -> str:
        """Store the report; returns where it went (a path or URL a person can open)."""


class LocalReports(Reports):
    directory: str

    def path(self, relative_path: str) -> Path:
        relative = PurePosixPath(relative_path)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(
                f"A report path is relative and stays inside; found {relative_path!r}."
            )
        return Path(self.directory, *relative.parts)

    def write(self, relative_path: str, html: str) -> str:
        """Atomically: a browser refreshing the report never sees half of it."""
        target = self.path(relative_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=target.parent, suffix=".tmp", delete=False, encoding="utf-8"
        ) as handle:
            handle.write(html)
        os.replace(handle.name, target)
        return str(target)
