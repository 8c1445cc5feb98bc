"""Raw tables: landed lines parsed into Delta, rejected lines quarantined with the reason.

Thin glue: read lines from the landing zone, classify them with ``ml_assets.lib.raw``, write
through the lakehouse, and report counts. Idempotent: a partition is written with
``replaceWhere`` over exactly its dates (events and their quarantine alike), and the users
history is rebuilt whole from the change log, so re-materializing yields the same tables.
"""

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.defs.checks import (
    fresh_check,
    newest_row_fresh,
    standard_table_checks,
    table_check,
)
from ml_assets.defs.metadata import (
    ReadBack,
    check_result,
    read_back,
    rows_per_day,
    table_asset_spec,
    write_metadata,
)
from ml_assets.defs.partitions import partition_dates, report_per_partition
from ml_assets.lib import quality
from ml_assets.lib.lakehouse import TableCommit
from ml_assets.lib.producer_contract import summed_field_counts, unknown_field_counts
from ml_assets.lib.raw import (
    EVENT_CONSTRAINTS,
    EVENTS,
    EVENTS_QUARANTINE,
    USER_CONSTRAINTS,
    USERS,
    USERS_QUARANTINE,
    IngestionCounts,
    backdated_changes,
    classify_user_changes,
    event_outcomes,
    ingestion_counts,
    ingestion_counts_by_day,
    judge_events,
    kept_events,
    quarantined,
    scd_history,
    summed_counts,
)
from ml_assets.lib.source import EVENTS_DIR, USERS_DIR
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.landing import LandedLines, LandingZone, read_metadata, seen_once

EVENTS_KEY = dg.AssetKey(names.RAW_EVENTS_KEY)
EVENTS_QUARANTINE_KEY = dg.AssetKey(names.RAW_EVENTS_QUARANTINE_KEY)
USERS_KEY = dg.AssetKey(names.RAW_USERS_KEY)
USERS_QUARANTINE_KEY = dg.AssetKey(names.RAW_USERS_QUARANTINE_KEY)
SOURCE_KEY = dg.AssetKey(names.DEMO_SOURCE_KEY)

EVENTS_FRESHNESS_MAX_LAG = dt.timedelta(hours=24)
# each batch counts this many unknown field names, so that the 20 shown are summed exactly
UNKNOWN_FIELDS_PER_BATCH = 1000


def _conservation_check(
    key: dg.AssetKey, counts: IngestionCounts, kept_in_table: int, quarantined_in_table: int
) -> dg.AssetCheckResult:
    """Lines landed = rows now in the table + rows now in the quarantine + duplicates removed.

    The kept and quarantined figures are read back from the tables after the write, so a
    write that lost rows fails this check.
    """
    return check_result(
        quality.rows_conserved(
            counts.lines, kept_in_table, quarantined_in_table, counts.duplicates
        ),
        asset_key=key,
        check_name=names.CHECK_ROWS_CONSERVED,
    )


def _ingestion_metadata(
    counts: IngestionCounts,
    reads: Sequence[LandedLines],
    unknown_fields: dict[str, int],
    seconds: float,
) -> dict[str, object]:
    return {
        **read_metadata(reads),
        "unknown_fields": unknown_fields,
        "lines_landed": counts.lines,
        "rows_kept": counts.kept,
        "rows_quarantined": counts.quarantined,
        "duplicates_removed": counts.duplicates,
        "quarantined_by_reason": counts.by_reason,
        "seconds": round(seconds, 2),
        "lines_per_second": round(counts.lines / seconds) if seconds > 0 else 0,
    }


def _warn_ignored(context: dg.AssetExecutionContext, reads: Sequence[LandedLines]) -> None:
    """Name what the landing zone holds that is not landed data, and files read line by line
    (once each, however many batches read them)."""
    _, ignored, repaired = seen_once(reads)
    if ignored:
        context.log.warning(
            "Ignored in the landing zone (not landed data, not read): %s", "; ".join(ignored[:20])
        )
    if repaired:
        context.log.warning(
            "Not clean UTF-8 (byte order mark or invalid bytes), read line by line, bad lines "
            "quarantined as invalid_encoding: %s",
            ", ".join(repaired[:20]),
        )


@dg.multi_asset(
    specs=[
        table_asset_spec(USERS_KEY, USERS, group=names.RAW, deps=[SOURCE_KEY]),
        table_asset_spec(
            USERS_QUARANTINE_KEY, USERS_QUARANTINE, group=names.RAW, deps=[SOURCE_KEY]
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            names.CHECK_ROWS_CONSERVED,
            asset=USERS_KEY,
            blocking=True,
            description="Every landed change-log line is either a users row or a quarantined "
            "row (lines = kept + quarantined + duplicates removed). A failure means rows were "
            "lost or invented between the landed files and the table.",
        )
    ],
    name="raw_users",
)
def raw_users(context: dg.AssetExecutionContext, lakehouse: Lakehouse, landing: LandingZone):
    """Rebuild the users SCD history from every landed change-log file."""
    started = time.perf_counter()
    landed = landing.read_lines(USERS_DIR)
    _warn_ignored(context, [landed])
    classified = classify_user_changes(landed.lines)
    with lakehouse.checkpoint(classified) as judged:  # parse once, use three times
        counts = ingestion_counts(judged)
        unknown_fields = unknown_field_counts(judged)
        users_commit = lakehouse.overwrite(USERS, scd_history(judged))
        quarantine_commit = lakehouse.overwrite(USERS_QUARANTINE, quarantined(judged))
    seconds = time.perf_counter() - started
    stats = read_back(lakehouse, USERS, key="user_id", time_column="valid_from")
    quarantined_rows = lakehouse.read(USERS_QUARANTINE).count()
    context.log.info(
        "users: %d lines -> %d versions of %d users, %d quarantined, %d duplicates",
        counts.lines,
        stats.rows,
        stats.keys,
        quarantined_rows,
        counts.duplicates,
    )
    users_metadata = {
        **write_metadata(USERS, users_commit, lakehouse.uri(USERS), total_rows=stats.rows),
        **_ingestion_metadata(counts, [landed], unknown_fields, seconds),
        "users": stats.keys,
        "first_valid_from": str(stats.first),
        "last_valid_from": str(stats.last),
    }
    yield dg.MaterializeResult(asset_key=USERS_KEY, metadata=users_metadata)
    yield _quarantine_result(
        USERS_QUARANTINE_KEY,
        USERS_QUARANTINE,
        [quarantine_commit],
        lakehouse,
        counts,
        quarantined_rows,
        {},
    )
    yield _conservation_check(USERS_KEY, counts, stats.rows, quarantined_rows)


def _batched_write_metadata(
    lakehouse: Lakehouse, spec, commits: Sequence[TableCommit], total_rows: int
) -> dict[str, object]:
    """The table after the run's last commit (each day's own rows are added per partition)."""
    metadata = write_metadata(spec, commits[-1], lakehouse.uri(spec), total_rows=total_rows)
    return metadata | {"delta_commits_in_run": len(commits)}


def _quarantine_result(
    key: dg.AssetKey,
    spec,
    commits: Sequence[TableCommit],
    lakehouse: Lakehouse,
    counts: IngestionCounts,
    total: int,
    extra: dict,
) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=key,
        metadata={
            **_batched_write_metadata(lakehouse, spec, commits, total),
            **extra,
            "quarantined_by_reason": counts.by_reason,
        },
    )


def _range_rows(start: dt.date, end: dt.date, rows: int) -> dict[str, object]:
    """Rows of the run's days (each day's own count is added per partition)."""
    return {"rows_in_range": rows}


@dataclass(frozen=True)
class _Batch:
    landed: LandedLines
    counts: IngestionCounts
    by_day: dict[dt.date, IngestionCounts]
    unknown_fields: dict[str, int]
    events_commit: TableCommit
    quarantine_commit: TableCommit
    seconds_by_step: dict[str, float]


class _Laps:
    """Wall time per step, each step timed from the end of the one before."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = now - self._last
        self._last = now


def _summed_steps(batches: Sequence[_Batch]) -> dict[str, float]:
    total: dict[str, float] = {}
    for batch in batches:
        for step, seconds in batch.seconds_by_step.items():
            total[step] = total.get(step, 0.0) + seconds
    return {step: round(seconds, 2) for step, seconds in total.items()}


def _report_days(
    context: dg.AssetExecutionContext,
    lakehouse: Lakehouse,
    batches: Sequence[_Batch],
    start: dt.date,
    end: dt.date,
) -> None:
    """Each day's own rows, lines and quarantine on its partition of both tables."""
    counts = {day: c for b in batches for day, c in b.by_day.items()}
    events = rows_per_day(lakehouse, EVENTS, "event_date", start, end, time_column="event_ts")
    quarantine = rows_per_day(lakehouse, EVENTS_QUARANTINE, "partition_date", start, end)
    none = IngestionCounts(0, 0, 0, 0, {})
    for day, stats in events.items():
        day_counts = counts.get(day, none)
        stats |= {
            "lines_landed": day_counts.lines,
            "rows_kept": day_counts.kept,
            "rows_quarantined": day_counts.quarantined,
            "duplicates_removed": day_counts.duplicates,
            "quarantined_by_reason": day_counts.by_reason,
        }
    report_per_partition(context, EVENTS_KEY, events)
    report_per_partition(context, EVENTS_QUARANTINE_KEY, quarantine)


def _ingest_events(
    lakehouse: Lakehouse, landing: LandingZone, landed: LandedLines, start: dt.date, end: dt.date
) -> _Batch:
    """Classify the landed lines, then replace the range's rows of the events and of their
    quarantine."""
    laps = _Laps()
    known_users = lakehouse.read(USERS).select("user_id")
    judged = judge_events(landed.lines, known_users, late_arrival_days=landing.late_arrival_days)
    in_range = F.col("partition_date").between(F.lit(start), F.lit(end))
    # Parsed and judged once. Duplicates are then ranked among every line read, the late
    # days' lines past the range included, as classify_events ranks them.
    with lakehouse.checkpoint(judged) as once:
        laps.lap("parse_and_judge")
        classified = event_outcomes(once).where(in_range)
        counts, counts_by_day = ingestion_counts_by_day(classified)
        unknown_fields = unknown_field_counts(once.where(in_range), limit=UNKNOWN_FIELDS_PER_BATCH)
        laps.lap("rank_and_count")
        events_commit = lakehouse.replace_range(
            EVENTS, kept_events(classified), column="event_date", start=start, end=end
        )
        laps.lap("write_events")
        quarantine_commit = lakehouse.replace_range(
            EVENTS_QUARANTINE,
            quarantined(once.where(in_range)),
            column="partition_date",
            start=start,
            end=end,
        )
    laps.lap("write_quarantine")
    return _Batch(
        landed,
        counts,
        counts_by_day,
        unknown_fields,
        events_commit,
        quarantine_commit,
        laps.seconds,
    )


def _ingest_in_batches(
    context: dg.AssetExecutionContext,
    lakehouse: Lakehouse,
    landing: LandingZone,
    start: dt.date,
    end: dt.date,
) -> list[_Batch]:
    """Ingest ``[start, end]`` in batches of days (``LandingZone.batches``) one after the
    other, so that the memory a backfill takes is bounded by its largest batch, not by its
    whole range. Each batch reads its days' files and their late arrivals and replaces
    exactly its days; a line is owned by the batch of its partition day (``lib.raw``), so
    every line of the range is counted once. Duplicates are found among the lines a batch
    reads, as among the lines a run reads: a re-sent event (same id and time) is always
    read by the batch that owns it. A run that fails after some batches leaves those days
    ingested; running it again replaces them (idempotent)."""
    late = dt.timedelta(days=landing.late_arrival_days)
    ranges = landing.batches(EVENTS_DIR, start, end)
    batches = []
    for i, (first, last) in enumerate(ranges, 1):
        started = time.perf_counter()
        landed = landing.read_lines(EVENTS_DIR, first, last + late)
        batch = _ingest_events(lakehouse, landing, landed, first, last)
        batches.append(batch)
        if len(ranges) > 1:
            context.log.info(
                "events batch %d/%d, %s..%s: %d lines (%d files) in %.1f s",
                i,
                len(ranges),
                first,
                last,
                batch.counts.lines,
                len(landed.files),
                time.perf_counter() - started,
            )
    return batches


def _read_back_range(
    lakehouse: Lakehouse, start: dt.date, end: dt.date
) -> tuple[ReadBack, ReadBack]:
    """The events table and its quarantine after the run's writes (rows in the range, total)."""
    window = {"start": start, "end": end}
    events = read_back(
        lakehouse, EVENTS, time_column="event_ts", range_column="event_date", **window
    )
    quarantine = read_back(lakehouse, EVENTS_QUARANTINE, range_column="partition_date", **window)
    return events, quarantine


def _events_metadata(
    lakehouse: Lakehouse,
    batches: Sequence[_Batch],
    counts: IngestionCounts,
    stats: ReadBack,
    seconds: float,
    start: dt.date,
    end: dt.date,
) -> dict[str, object]:
    """The run's figures on the events table (each day's own are added per partition)."""
    commits = [b.events_commit for b in batches]
    unknown_fields = summed_field_counts(b.unknown_fields for b in batches)
    return {
        **_batched_write_metadata(lakehouse, EVENTS, commits, stats.rows),
        **_ingestion_metadata(counts, [b.landed for b in batches], unknown_fields, seconds),
        "ingestion_batches": len(batches),
        # where the batches' seconds went (ranking runs again inside write_events)
        "seconds_by_step": _summed_steps(batches),
        **_range_rows(start, end, stats.in_range),
        "first_event_ts": str(stats.first),
        "last_event_ts": str(stats.last),
        "partition_range": f"{start}..{end}",  # the run's; each day adds its own figures
    }


def build_raw_events(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.multi_asset(
        specs=[
            table_asset_spec(EVENTS_KEY, EVENTS, group=names.RAW, deps=[SOURCE_KEY, USERS_KEY]),
            table_asset_spec(
                EVENTS_QUARANTINE_KEY, EVENTS_QUARANTINE, group=names.RAW, deps=[SOURCE_KEY]
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                names.CHECK_ROWS_CONSERVED,
                asset=EVENTS_KEY,
                blocking=True,
                description="Every landed event line of the partitions' days is either an "
                "events row or a quarantined row (lines = kept + quarantined + duplicates "
                "removed). A failure means events were lost or invented during ingestion.",
            )
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        name="raw_events",
    )
    def raw_events(context: dg.AssetExecutionContext, lakehouse: Lakehouse, landing: LandingZone):
        """Ingest the events of the partitions' days: their files plus late arrivals, in
        batches of days (the landing zone's ``max_bytes_per_batch``)."""
        start, end = partition_dates(context)
        started = time.perf_counter()
        batches = _ingest_in_batches(context, lakehouse, landing, start, end)
        _warn_ignored(context, [b.landed for b in batches])
        counts = summed_counts(b.counts for b in batches)
        seconds = time.perf_counter() - started
        stats, q_stats = _read_back_range(lakehouse, start, end)
        context.log.info(
            "events %s..%s: %d lines -> %d kept, %d quarantined, %d duplicates in %.1f s",
            start,
            end,
            counts.lines,
            stats.in_range,
            q_stats.in_range,
            counts.duplicates,
            seconds,
        )
        _report_days(context, lakehouse, batches, start, end)
        metadata = _events_metadata(lakehouse, batches, counts, stats, seconds, start, end)
        yield dg.MaterializeResult(asset_key=EVENTS_KEY, metadata=metadata)
        yield _quarantine_result(
            EVENTS_QUARANTINE_KEY,
            EVENTS_QUARANTINE,
            [b.quarantine_commit for b in batches],
            lakehouse,
            counts,
            q_stats.rows,
            _range_rows(start, end, q_stats.in_range),
        )
        yield _conservation_check(EVENTS_KEY, counts, stats.in_range, q_stats.in_range)

    return raw_events


def _events_fresh(lakehouse: Lakehouse, landing: LandingZone) -> quality.CheckOutcome:
    return newest_row_fresh(
        lakehouse, landing, EVENTS, "event_ts", EVENTS_DIR, EVENTS_FRESHNESS_MAX_LAG
    )


def _users_fresh(lakehouse: Lakehouse, landing: LandingZone) -> quality.CheckOutcome:
    """The users history is rebuilt whole: fresh when written after the newest change file."""
    newest = landing.newest_landing(USERS_DIR)
    if newest is None:
        return quality.CheckOutcome(False, "Nothing has landed yet", {})
    written = lakehouse.history(USERS, limit=1)[0].timestamp
    return quality.fresh(written, newest[1], dt.timedelta(0), what="last write")


def _one_current_version(lakehouse: Lakehouse) -> quality.CheckOutcome:
    users = lakehouse.read(USERS)
    outcome = quality.unique(users.where(F.col("is_current")), ["user_id"])
    counts = users.select(
        F.countDistinct("user_id").alias("users"),
        F.countDistinct(F.when(F.col("is_current"), F.col("user_id"))).alias("current"),
    ).first()
    missing = counts["users"] - counts["current"]
    return quality.CheckOutcome(
        passed=outcome.passed and missing == 0,
        description=(
            f"{outcome.description}; {missing} user(s) without a current version"
            if missing
            else outcome.description
        ),
        observed={**outcome.observed, "users_without_current_version": missing},
    )


@dg.asset_check(
    asset=USERS_KEY,
    name=names.CHECK_NO_BACKDATED_CHANGES,
    blocking=True,
    description="After the initial load, every change lands within the late-arrival window of "
    "the time it claims; a backdated change would leak the future into point-in-time features.",
)
def no_backdated_changes(lakehouse: Lakehouse, landing: LandingZone) -> dg.AssetCheckResult:
    return check_result(backdated_changes(lakehouse.read(USERS), landing.late_arrival_days))


def build_raw_checks() -> list[dg.AssetChecksDefinition]:
    return [
        *standard_table_checks(
            EVENTS_KEY,
            EVENTS,
            constraints=EVENT_CONSTRAINTS,
            not_null=("event_id", "user_id", "event_ts", "event_date"),
        ),
        *standard_table_checks(EVENTS_QUARANTINE_KEY, EVENTS_QUARANTINE),
        *standard_table_checks(USERS_KEY, USERS, constraints=USER_CONSTRAINTS),
        *standard_table_checks(USERS_QUARANTINE_KEY, USERS_QUARANTINE),
        table_check(
            USERS_KEY,
            names.CHECK_ONE_CURRENT_VERSION,
            "Every user has exactly one current version (is_current).",
            _one_current_version,
        ),
        no_backdated_changes,
        fresh_check(
            EVENTS_KEY,
            _events_fresh,
            f"The newest event is at most {EVENTS_FRESHNESS_MAX_LAG} behind the newest landed day.",
        ),
        fresh_check(
            USERS_KEY,
            _users_fresh,
            "The users history was rebuilt after the newest change-log file landed.",
        ),
    ]
