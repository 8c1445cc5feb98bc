"""What a landed file is, and how landed bytes become lines. Pure Python: no Spark, no Dagster.

One rule, used by ingestion, the landing sensor and the freshness checks alike:

- a landing day is a folder named exactly ``date=YYYY-MM-DD`` (a real calendar date) directly
  under the kind's folder (``events/``, ``users/``);
- a landed file is a regular file in a day folder whose name ends in ``.jsonl``, does not start
  with ``.`` (hidden) or ``_`` (markers such as ``_SUCCESS``), and carries no ``.part`` or ``.tmp``
  suffix (an upload still in progress).

Everything else found there is *ignored*, never read, and reported with the reason, so a stray
``notes.txt``, a half-written ``events.jsonl.part`` or a folder ``date=not-a-date`` neither fails
a run nor slips into a table.

Encoding: a landed file is UTF-8 JSON lines (lines end in ``\\n`` or ``\\r\\n``). A byte order mark
at the start of a file is stripped. A line that is not valid UTF-8 is kept as text with its bytes
escaped (:func:`escape_bytes`, reversed by :func:`unescape_bytes`) and flagged, so the raw layer
quarantines it as ``invalid_encoding`` and the rest of the file is still ingested.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ml_assets.lib.quality import CheckOutcome

LANDED_SUFFIX = ".jsonl"
IN_PROGRESS_SUFFIXES = (".part", ".tmp")
DAY_FOLDER = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
BOM = codecs.BOM_UTF8
_SCAN_CHUNK_BYTES = 1 << 22


def landed_file_problem(name: str) -> str | None:
    """Why a file of this name is not a landed file, or None when it is one."""
    if name.startswith((".", "_")):
        return "hidden or marker file (name starts with '.' or '_')"
    suffixes = [s.lower() for s in Path(name).suffixes]
    if any(s in IN_PROGRESS_SUFFIXES for s in suffixes):
        return "upload in progress (.part or .tmp)"
    if not name.endswith(LANDED_SUFFIX):
        return f"not a {LANDED_SUFFIX} file"
    return None


def landing_day(folder_name: str) -> dt.date | None:
    """The date of a ``date=YYYY-MM-DD`` folder, or None when the name is not one."""
    match = DAY_FOLDER.fullmatch(folder_name)
    if match is None:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:  # date=2026-02-30: the shape of a date, not a date
        return None


@dataclass(frozen=True)
class Ignored:
    """Something in the landing folder that is not landed data, and why."""

    path: str  # relative to the kind's folder
    why: str

    def __str__(self) -> str:
        return f"{self.path} ({self.why})"


def days_missing(listings: Mapping[str, Listing], requested: Sequence[dt.date]) -> CheckOutcome:
    """Every requested day has at least one landed file of every kind."""
    missing = {
        kind: [d.isoformat() for d in requested if d not in listing.files]
        for kind, listing in listings.items()
    }
    missing = {kind: days for kind, days in missing.items() if days}
    observed = {
        "days_requested": len(requested),
        "first_requested": requested[0].isoformat() if requested else "",
        "last_requested": requested[-1].isoformat() if requested else "",
        **{f"days_landed_{kind}": len(listing.files) for kind, listing in listings.items()},
        "days_missing": {kind: days[:20] for kind, days in missing.items()},
    }
    if not requested:
        return CheckOutcome(False, "No day was requested: nothing to compare.", observed)
    if missing:
        shown = "; ".join(
            f"{kind}: {len(days)} day(s), e.g. {', '.join(days[:5])}"
            for kind, days in missing.items()
        )
        return CheckOutcome(False, f"Days requested but not landed: {shown}", observed)
    return CheckOutcome(
        True,
        f"All {len(requested)} requested days ({requested[0]}..{requested[-1]}) landed for "
        + ", ".join(listings),
        observed,
    )


@dataclass(frozen=True)
class Listing:
    """The landed files of one kind, by landing day, and what was ignored beside them."""

    root: Path
    files: dict[dt.date, tuple[Path, ...]]  # ascending days, each with at least one file
    ignored: tuple[Ignored, ...]

    @property
    def dates(self) -> list[dt.date]:
        return list(self.files)

    def between(
        self, start: dt.date | None, end: dt.date | None
    ) -> dict[dt.date, tuple[Path, ...]]:
        return {
            day: paths
            for day, paths in self.files.items()
            if (start is None or day >= start) and (end is None or day <= end)
        }

    def newest(self) -> tuple[dt.date, dt.datetime] | None:
        """The newest landing day and when its newest file was last written (UTC)."""
        if not self.files:
            return None
        day = self.dates[-1]
        mtime = max(p.stat().st_mtime for p in self.files[day])
        return day, dt.datetime.fromtimestamp(mtime, tz=dt.UTC)

    def bytes_by_day(self) -> dict[dt.date, int]:
        """The size of each landing day's files together."""
        return {day: sum(p.stat().st_size for p in paths) for day, paths in self.files.items()}


def ingestion_batches(
    bytes_by_day: Mapping[dt.date, int],
    start: dt.date,
    end: dt.date,
    *,
    late_arrival_days: int,
    max_bytes: int,
) -> list[tuple[dt.date, dt.date]]:
    """Split the partition days ``[start, end]`` into consecutive ranges whose reads stay
    under ``max_bytes`` (as Auto Loader's ``maxBytesPerTrigger`` splits a backlog).

    A range ``[a, b]`` owns the lines whose partition day is in it and reads the files landed
    on ``a .. b + late_arrival_days`` (its days and their late arrivals; see ``lib.raw``), so
    ranges read overlapping files but own disjoint lines, and every day of ``[start, end]``
    is in exactly one range. A range grows a day at a time while its read stays within
    ``max_bytes``; a single day that reads more is a range of its own (a day is never split).
    """
    if end < start:
        raise ValueError(f"An empty range of days: {start} is after {end}.")
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive; got {max_bytes}.")
    one, late = dt.timedelta(days=1), dt.timedelta(days=late_arrival_days)

    def size(day: dt.date) -> int:
        return bytes_by_day.get(day, 0)

    batches: list[tuple[dt.date, dt.date]] = []
    first = start
    while first <= end:
        last = first
        read = sum(size(first + i * one) for i in range(late_arrival_days + 1))
        while last < end and read + size(last + one + late) <= max_bytes:
            last += one
            read += size(last + late)
        batches.append((first, last))
        first = last + one
    return batches


def list_landed(kind_dir: Path) -> Listing:
    """Apply the landed-file rule to one kind's folder (missing folder: nothing landed)."""
    kind_dir = Path(kind_dir)
    files: dict[dt.date, tuple[Path, ...]] = {}
    ignored: list[Ignored] = []
    if not kind_dir.is_dir():
        return Listing(kind_dir, {}, ())
    for entry in sorted(kind_dir.iterdir()):
        day = landing_day(entry.name) if entry.is_dir() and not entry.is_symlink() else None
        if day is None:
            why = (
                "folder name is not date=YYYY-MM-DD with a real date"
                if entry.is_dir()
                else "file outside a date=YYYY-MM-DD folder"
            )
            ignored.append(Ignored(entry.name, why))
            continue
        landed = []
        for path in sorted(entry.iterdir()):
            problem = landed_file_problem(path.name)
            if problem is None and (path.is_symlink() or not path.is_file()):
                problem = "not a regular file"
            if problem is None:
                landed.append(path)
            else:
                ignored.append(Ignored(f"{entry.name}/{path.name}", problem))
        if landed:
            files[day] = tuple(landed)
    return Listing(kind_dir, dict(sorted(files.items())), tuple(ignored))


def is_clean_utf8(path: Path) -> bool:
    """True when the file is valid UTF-8 without a byte order mark (read in bounded chunks)."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    with open(path, "rb") as f:
        first = True
        while chunk := f.read(_SCAN_CHUNK_BYTES):
            if first and chunk.startswith(BOM):
                return False
            first = False
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return False
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def escape_bytes(raw: bytes) -> str:
    """ASCII text that names every byte: printable ASCII as is, the rest as ``\\xNN``."""
    return raw.decode("latin-1").encode("unicode_escape").decode("ascii")


def unescape_bytes(text: str) -> bytes:
    """The bytes :func:`escape_bytes` was given."""
    return text.encode("ascii").decode("unicode_escape").encode("latin-1")


def decoded_lines(path: Path) -> Iterator[tuple[str, bool]]:
    """Each line of a file as ``(text, invalid_encoding)``: a leading BOM stripped, a line
    that is not UTF-8 escaped byte for byte. Streams the file: memory grows with the longest
    line, not with the file."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f):
            if number == 0 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            raw = raw.removesuffix(b"\n").removesuffix(b"\r")
            try:
                yield raw.decode("utf-8"), False
            except UnicodeDecodeError:
                yield escape_bytes(raw), True
