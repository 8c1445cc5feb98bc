"""The landing zone's producer: the seeded demo business (stands in for upstream systems)."""

import datetime as dt
import time

import dagster as dg
from pydantic import Field

from ml_assets import names
from ml_assets.defs.config_types import IsoDate
from ml_assets.defs.metadata import check_result
from ml_assets.lib.landing import days_missing
from ml_assets.lib.source import EVENTS_DIR, USERS_DIR, land
from ml_assets.resources.landing import DemoSource, LandingZone


class LandingConfig(dg.Config):
    through_date: IsoDate | None = Field(
        None,
        description="Land only the days up to this date (YYYY-MM-DD), as if the calendar "
        "stopped there. Unset: every day of the calendar.",
    )


@dg.asset(
    key=dg.AssetKey(names.DEMO_SOURCE_KEY),
    group_name=names.LANDING,
    description=(
        "Lands the seeded demo e-commerce business: daily event files and users change-log "
        "files (JSON lines), with duplicates, late events, bad ids, malformed lines, negative "
        "revenue and future timestamps at small configured rates. Deterministic: landing "
        "again writes the same bytes."
    ),
    kinds={"json"},
)
def demo_source(
    context: dg.AssetExecutionContext,
    config: LandingConfig,
    demo_source: DemoSource,
    landing: LandingZone,
) -> dg.MaterializeResult:
    source = demo_source.config()
    through = dt.date.fromisoformat(config.through_date) if config.through_date else None
    started = time.perf_counter()
    summary = land(source, landing.root, through=through)
    elapsed = time.perf_counter() - started
    context.log.info(
        "Landed %d event lines and %d change-log lines for %d days in %.1f s",
        summary.event_lines,
        summary.change_lines,
        len(summary.dates),
        elapsed,
    )
    metadata: dict[str, object] = {
        "landing_root": dg.MetadataValue.path(landing.root),
        "scale": demo_source.scale,
        "users": dg.MetadataValue.text(str(source.users)),  # settings: text, not a chart
        "seed": dg.MetadataValue.text(str(source.seed)),
        "requested_from": source.start_date.isoformat(),
        "requested_through": min(through or source.end_date, source.end_date).isoformat(),
        "first_date": summary.dates[0].isoformat() if summary.dates else "none",
        "last_date": summary.dates[-1].isoformat() if summary.dates else "none",
        "days_landed": len(summary.dates),
        "event_lines": summary.event_lines,
        "change_lines": summary.change_lines,
        "seconds": round(elapsed, 2),
    }
    if summary.injected_events:
        metadata["injected_event_dirt"] = summary.injected_events
        metadata["injected_change_dirt"] = summary.injected_changes
    return dg.MaterializeResult(metadata=metadata)


def _requested_days(instance: dg.DagsterInstance) -> list[dt.date]:
    """The days the latest landing was asked for (its metadata), else none."""
    event = instance.get_latest_materialization_event(dg.AssetKey(names.DEMO_SOURCE_KEY))
    metadata = {} if event is None else event.asset_materialization.metadata
    if "requested_from" not in metadata:
        return []
    first = dt.date.fromisoformat(str(metadata["requested_from"].value))
    last = dt.date.fromisoformat(str(metadata["requested_through"].value))
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


@dg.asset_check(
    asset=dg.AssetKey(names.DEMO_SOURCE_KEY),
    name=names.CHECK_DAYS_LANDED,
    blocking=True,
    description="Every day the latest landing was asked for (the calendar up to through_date) "
    "has at least one landed file of events and of user changes in the landing zone now. A "
    "failure means days are missing (a landing stopped early, or files were removed): raw "
    "ingestion would silently see no data for them.",
)
def every_requested_day_landed(
    context: dg.AssetCheckExecutionContext, landing: LandingZone
) -> dg.AssetCheckResult:
    listings = {kind: landing.listing(kind) for kind in (EVENTS_DIR, USERS_DIR)}
    return check_result(days_missing(listings, _requested_days(context.instance)))
