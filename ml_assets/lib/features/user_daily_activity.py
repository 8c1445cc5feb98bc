"""``features/user_daily_activity``: the building block, per user per UTC day.

One row per user per day with at least one event: counts by event type, distinct sessions
and purchase revenue. ``feature_ts`` is the end of the day, as the exclusive bound
``day + 1 00:00 UTC``: every event counted happened strictly before it, so a spine row at
``label_ts = feature_ts`` may use it.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_assets.lib.features.contracts import Feature, FeatureTableContract
from ml_assets.lib.lakehouse import Column
from ml_assets.names import USER_DAILY_ACTIVITY_TABLE

OWNER = "ml-platform"

MONEY = "decimal(18,2)"
# event type -> feature name
COUNTED_EVENTS = {
    "login": "logins",
    "page_view": "page_views",
    "add_to_cart": "add_to_carts",
    "purchase": "purchases",
}


def _count(name: str, what: str) -> Feature:
    return Feature(name, "bigint", what, window="1d", default=0, constraint=">= 0")


CONTRACT = FeatureTableContract(
    name=USER_DAILY_ACTIVITY_TABLE,
    entity_keys=("user_id",),
    timestamp_key="feature_ts",
    columns=(
        Column("user_id", "bigint", False, "User"),
        Column("feature_ts", "timestamp", False, "End of activity_date (next day 00:00 UTC)"),
        Column("activity_date", "date", False, "UTC day of the activity; the partition"),
    ),
    features=(
        *(_count(name, f"{t} events that day") for t, name in COUNTED_EVENTS.items()),
        _count("events", "All events that day"),
        _count("sessions", "Distinct sessions with an event that day"),
        Feature(
            "revenue",
            "double",
            "Purchase revenue that day",
            window="1d",
            default=0.0,
            constraint=">= 0",
        ),
    ),
    owner=OWNER,
    refresh_cadence="daily",
    freshness_sla=dt.timedelta(days=1),
    description="Per user per UTC day: event counts by type, sessions and revenue.",
    partition_by=("activity_date",),
)


def exact_sum(money: SparkColumn) -> SparkColumn:
    """A sum of amounts in cents as an exact decimal: the same result in any order of rows.
    A double sum depends on the order, so a day computed alone and in a backfill would differ
    in the last bits, and a merge would rewrite rows that did not change."""
    return F.sum(money.cast(MONEY)).cast("double")


def compute_features(events: DataFrame, start_date: dt.date, end_date: dt.date) -> DataFrame:
    """Daily rows for ``start_date..end_date`` (inclusive) from raw events.

    Two aggregations: per user, day and session, then per user and day, where ``sessions`` is
    a count of the session rows. A ``countDistinct`` per user and day gives the same numbers,
    but the embedded engine keeps a set of session ids for every group at once: over the
    demo's 212 days (350k groups) that took 5.8 GiB and 8.8 s, the two aggregations 0.25 GiB
    and 0.7 s (benchmarks/README.md). The revenue stays an exact decimal sum (``exact_sum``)."""
    days = events.where(F.col("event_date").between(F.lit(start_date), F.lit(end_date)))
    per_session = days.groupBy(
        "user_id", F.col("event_date").alias("activity_date"), "session_id"
    ).agg(
        *[
            F.sum((F.col("event_type") == event_type).cast("long")).alias(name)
            for event_type, name in COUNTED_EVENTS.items()
        ],
        F.count(F.lit(1)).alias("events"),
        F.sum(F.col("revenue").cast(MONEY)).alias("revenue"),
    )
    return (
        per_session.groupBy("user_id", "activity_date")
        .agg(
            *[F.sum(name).alias(name) for name in (*COUNTED_EVENTS.values(), "events")],
            # a null session id is one group of the first aggregation; count() skips it, as
            # countDistinct does
            F.count("session_id").alias("sessions"),
            F.coalesce(F.sum("revenue").cast("double"), F.lit(0.0)).alias("revenue"),
        )
        .withColumn("feature_ts", F.date_add("activity_date", 1).cast("timestamp"))
    )
