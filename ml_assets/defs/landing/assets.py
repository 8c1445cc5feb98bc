"""The landing zone's producer: the seeded demo business (stands in for upstream systems)."""

import datetime as dt
import time

import dagster as dg
from pydantic import Field

from ml_assets import names
from ml_assets.lib.source import land
from ml_assets.resources.landing import DemoSource, LandingZone


class LandingConfig(dg.Config):
    through_date: str | None = Field(
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
        "users": source.users,
        "seed": source.seed,
        "first_date": summary.dates[0].isoformat() if summary.dates else "",
        "last_date": summary.dates[-1].isoformat() if summary.dates else "",
        "days_landed": len(summary.dates),
        "event_lines": summary.event_lines,
        "change_lines": summary.change_lines,
        "seconds": round(elapsed, 2),
    }
    if summary.injected_events:
        metadata["injected_event_dirt"] = summary.injected_events
        metadata["injected_change_dirt"] = summary.injected_changes
    return dg.MaterializeResult(metadata=metadata)
