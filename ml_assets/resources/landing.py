"""The landing zone: where upstream systems drop files (here, the demo source)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow as pa
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ml_assets.lib.landing import (
    Ignored,
    Listing,
    decoded_lines,
    ingestion_batches,
    is_clean_utf8,
    landing_day,
    list_landed,
)
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


@dataclass(frozen=True)
class LandedLines:
    """Lines read from the landing zone, and what the read saw on disk."""

    lines: DataFrame  # value (the line), landing_date (date), invalid_encoding (boolean)
    files: tuple[str, ...]  # the landed files read, relative to the kind's folder
    ignored: tuple[Ignored, ...]
    repaired_files: tuple[str, ...]  # not clean UTF-8 (BOM or bad bytes): read line by line


def seen_once(reads: Sequence[LandedLines]) -> tuple[list[str], list[str], list[str]]:
    """The files read, the entries ignored and the files repaired by one or several reads (a
    range ingested in batches), each once, in the order first seen."""

    def once(items: Iterable[str]) -> list[str]:
        return list(dict.fromkeys(items))

    return (
        once(f for read in reads for f in read.files),
        once(str(i) for read in reads for i in read.ignored),
        once(f for read in reads for f in read.repaired_files),
    )


def read_metadata(reads: Sequence[LandedLines], limit: int = 50) -> dict[str, object]:
    """What the reads read and ignored (a file read by two batches counts once); lists cut
    to ``limit`` entries."""

    def cut(items: list[str]) -> list[str]:
        more = [f"... and {len(items) - limit} more"] if len(items) > limit else []
        return items[:limit] + more

    files, ignored, repaired = seen_once(reads)
    return {
        "landed_files_read": len(files),
        "ignored_in_landing": cut(ignored),
        "files_not_clean_utf8": cut(repaired),
    }


LINES_SCHEMA = "value string, landing_date date, invalid_encoding boolean"


class LandingZone(dg.ConfigurableResource):
    """Daily JSON-lines files under ``<root>/<kind>/date=YYYY-MM-DD/``.

    What counts as a landed file is decided by :mod:`ml_assets.lib.landing`, for ingestion, the
    sensor and the freshness checks alike.
    """

    root: str
    spark: SparkResource
    late_arrival_days: int = 3
    max_bytes_per_batch: int = Field(
        default=512 * 2**20,
        gt=0,
        description="A range of days is ingested in batches whose landed files (each batch's "
        "days and their late arrivals) add up to at most this many bytes, as Auto Loader's "
        "maxBytesPerTrigger splits a backlog; a day larger than this is a batch of its own.",
    )

    def _kind_dir(self, kind: str) -> Path:
        if kind not in LANDING_KINDS:
            raise ValueError(f"Unknown landing kind {kind!r}; expected one of {LANDING_KINDS}.")
        return Path(self.root) / kind

    def listing(self, kind: str) -> Listing:
        return list_landed(self._kind_dir(kind))

    def newest_landing(self, kind: str) -> tuple[dt.date, dt.datetime] | None:
        """The newest landed date and when its file was last written (UTC)."""
        return self.listing(kind).newest()

    def batches(self, kind: str, start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
        """The partition days ``[start, end]`` as ranges to ingest one after the other, each
        reading at most ``max_bytes_per_batch`` of landed files (see ``ingestion_batches``)."""
        return ingestion_batches(
            self.listing(kind).bytes_by_day(),
            start,
            end,
            late_arrival_days=self.late_arrival_days,
            max_bytes=self.max_bytes_per_batch,
        )

    def read_lines(
        self, kind: str, start: dt.date | None = None, end: dt.date | None = None
    ) -> LandedLines:
        """Landed lines with their landing date, for files landed in ``[start, end]``.

        Files that are clean UTF-8 (nearly all) are read by Spark; a file with a byte order
        mark or bytes that are not UTF-8 is read here line by line, its bad lines escaped and
        flagged ``invalid_encoding`` instead of failing the whole read.
        """
        listing = self.listing(kind)
        if not listing.files:
            raise FileNotFoundError(
                f"Nothing has landed under {listing.root}. Materialize landing/demo_source first "
                "(or point the landing zone at the upstream drop folder)."
            )
        spark = self.spark.get_session()
        parts: list[DataFrame] = []
        repaired: list[Path] = []
        days = listing.between(start, end)
        for day, paths in days.items():
            clean = [p for p in paths if is_clean_utf8(p)]
            repaired += [p for p in paths if p not in clean]
            if clean:
                parts.append(
                    spark.read.text([str(p) for p in clean]).select(
                        "value",
                        F.lit(day).alias("landing_date"),
                        F.lit(False).alias("invalid_encoding"),
                    )
                )
        if repaired:
            parts.append(_decoded(spark, repaired))
        lines = parts[0] if parts else spark.createDataFrame([], LINES_SCHEMA)
        for part in parts[1:]:
            lines = lines.unionByName(part)
        return LandedLines(
            lines=lines,
            files=tuple(str(p.relative_to(listing.root)) for ps in days.values() for p in ps),
            ignored=listing.ignored,
            repaired_files=tuple(str(p.relative_to(listing.root)) for p in repaired),
        )


def _decoded(spark: SparkSession, paths: list[Path]) -> DataFrame:
    """The lines of files that are not clean UTF-8, decoded here and sent to Spark."""
    values, days, invalid = [], [], []
    for path in paths:
        day = landing_day(path.parent.name)
        for text, bad in decoded_lines(path):
            values.append(text)
            days.append(day)
            invalid.append(bad)
    table = pa.table(
        {
            "value": pa.array(values, pa.string()),
            "landing_date": pa.array(days, pa.date32()),
            "invalid_encoding": pa.array(invalid, pa.bool_()),
        }
    )
    return spark.createDataFrame(table)


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
