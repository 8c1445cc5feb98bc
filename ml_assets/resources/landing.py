"""The landing zone: where upstream systems drop files (here, the demo source)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.source import (
    EVENTS_DIR,
    SCALES,
    USERS_DIR,
    BackdatedDowngrades,
    BehaviourShift,
    SourceConfig,
)
from ml_assets.resources.spark import SparkResource

LANDING_KINDS = (EVENTS_DIR, USERS_DIR)


class LandingZone(dg.ConfigurableResource):
    """Daily JSON-lines files under ``<root>/<kind>/date=YYYY-MM-DD/``."""

    root: str
    spark: SparkResource
    late_arrival_days: int = 3

    def _kind_dir(self, kind: str) -> Path:
        if kind not in LANDING_KINDS:
            raise ValueError(f"Unknown landing kind {kind!r}; expected one of {LANDING_KINDS}.")
        return Path(self.root) / kind

    def landed_dates(self, kind: str) -> list[dt.date]:
        base = self._kind_dir(kind)
        if not base.is_dir():
            return []
        return sorted(
            dt.date.fromisoformat(p.name.removeprefix("date="))
            for p in base.glob("date=*")
            if p.is_dir() and any(p.glob("*.jsonl"))
        )

    def newest_landing(self, kind: str) -> tuple[dt.date, dt.datetime] | None:
        """The newest landed date and when its file was last written (UTC)."""
        dates = self.landed_dates(kind)
        if not dates:
            return None
        day_dir = self._kind_dir(kind) / f"date={dates[-1].isoformat()}"
        mtime = max(p.stat().st_mtime for p in day_dir.glob("*.jsonl"))
        return dates[-1], dt.datetime.fromtimestamp(mtime, tz=dt.UTC)

    def read_lines(
        self, kind: str, start: dt.date | None = None, end: dt.date | None = None
    ) -> DataFrame:
        """Landed lines with their landing date, for files landed in ``[start, end]``."""
        base = self._kind_dir(kind)
        if not self.landed_dates(kind):
            raise FileNotFoundError(
                f"Nothing has landed under {base}. Materialize landing/demo_source first "
                "(or point the landing zone at the upstream drop folder)."
            )
        lines = self.spark.get_session().read.text(str(base))
        lines = lines.select("value", F.col("date").cast("date").alias("landing_date"))
        if start is not None:
            lines = lines.where(F.col("landing_date") >= F.lit(start))
        if end is not None:
            lines = lines.where(F.col("landing_date") <= F.lit(end))
        return lines


class DemoSource(dg.ConfigurableResource):
    """The seeded demo business that stands in for upstream systems (``lib.source``)."""

    scale: str = "demo"
    seed: int | None = None
    # injections, to show the monitors and checks failing (``make check --inject ...``)
    drift_from: str | None = None  # ISO date: sessions thinned from that day on
    drift_session_rate: float = 0.4
    backdated_downgrades: bool = False  # leakage: plan downgrades stamped before the churn

    def config(self) -> SourceConfig:
        if self.scale not in SCALES:
            raise ValueError(f"Unknown demo scale {self.scale!r}; expected one of {list(SCALES)}.")
        update: dict[str, object] = {}
        if self.seed is not None:
            update["seed"] = self.seed
        if self.drift_from is not None:
            update["behaviour_shift"] = BehaviourShift(
                start=dt.date.fromisoformat(self.drift_from), session_rate=self.drift_session_rate
            )
        if self.backdated_downgrades:
            update["backdated_downgrades"] = BackdatedDowngrades()
        return SCALES[self.scale].model_copy(update=update)
