"""Feature tables: thin assets around ``ml_assets.lib.features``; checks from the contracts.

Idempotency: ``user_daily_activity`` replaces exactly its days (``replaceWhere``);
``user_activity`` merges on (user_id, feature_ts), so a re-run rewrites the same rows and a
backfill of any range only touches that range; ``user_profile`` is rebuilt whole from the
users history, which is small and changes anywhere.
"""

import datetime as dt
import time
import warnings

import dagster as dg

from ml_assets import names
from ml_assets.defs.checks import feature_table_checks
from ml_assets.defs.metadata import read_back, rows_per_day, table_asset_spec, write_metadata
from ml_assets.defs.partitions import partition_dates, report_per_partition
from ml_assets.lib.features import user_activity, user_daily_activity, user_profile
from ml_assets.lib.features.contracts import FeatureTableContract
from ml_assets.lib.lakehouse import TableCommit
from ml_assets.lib.raw import EVENTS, USERS
from ml_assets.lib.source import EVENTS_DIR, USERS_DIR
from ml_assets.resources.lakehouse import Lakehouse

DAILY_KEY = dg.AssetKey(names.USER_DAILY_ACTIVITY_KEY)
ACTIVITY_KEY = dg.AssetKey(names.USER_ACTIVITY_KEY)
PROFILE_KEY = dg.AssetKey(names.USER_PROFILE_KEY)


def feature_asset_spec(
    key: dg.AssetKey,
    contract: FeatureTableContract,
    deps: list,
    automation_condition: dg.AutomationCondition | None = None,
) -> dg.AssetSpec:
    """Description and column metadata in the UI come from the contract."""
    return table_asset_spec(
        key,
        contract.table_spec,
        group=names.FEATURES,
        deps=deps,
        description=contract.markdown(),
        metadata={
            "entity_keys": ", ".join(contract.entity_keys),
            "timestamp_key": contract.timestamp_key,
            "refresh_cadence": contract.refresh_cadence,
            "freshness_sla_hours": contract.freshness_sla.total_seconds() / 3600,
            "features": len(contract.features),
        },
        automation_condition=automation_condition,
    )


def _partition_result(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    contract: FeatureTableContract,
    lakehouse: Lakehouse,
    commit: TableCommit,
    date_column: str,
    seconds: float,
    **extra: object,
) -> dg.MaterializeResult:
    """Rows and users in the materialized days, the write, and ``extra``; logged too."""
    start, end = partition_dates(context)
    spec = contract.table_spec
    stats = read_back(
        lakehouse, spec, key="user_id", range_column=date_column, start=start, end=end
    )
    merged = commit.operation == "MERGE"  # a merge's per-day writes are not known
    metadata: dict[str, object] = {
        **write_metadata(
            spec,
            commit,
            lakehouse.uri(spec),
            total_rows=stats.rows,
            range_run=merged and start != end,
        ),
        "rows_in_range": stats.in_range,
        "users_in_range": stats.keys,
        "partition_range": f"{start}..{end}",
        "seconds": round(seconds, 2),
        **extra,
    }
    report_per_partition(
        context,
        key,
        rows_per_day(lakehouse, spec, date_column, start, end, key="user_id", replaced=not merged),
    )
    context.log.info(
        "%s %s..%s: %d rows (%d users) in %.1f s; table %d rows, version %d",
        key.to_user_string(),
        start,
        end,
        metadata["rows_in_range"],
        metadata["users_in_range"],
        seconds,
        stats.rows,
        commit.version,
    )
    return dg.MaterializeResult(asset_key=key, metadata=metadata)


def build_feature_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The daily counts and the rolling windows over them, on the calendar's partitions."""
    return [_daily_activity(partitions_def), _activity(partitions_def)]


def _daily_activity(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    daily_contract = user_daily_activity.CONTRACT

    @dg.multi_asset(
        specs=[
            # declarative: a newly materialized raw/events partition -> its feature partition
            feature_asset_spec(
                DAILY_KEY,
                daily_contract,
                deps=[dg.AssetKey(names.RAW_EVENTS_KEY)],
                automation_condition=dg.AutomationCondition.eager(),
            )
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        name="user_daily_activity",
    )
    def daily_activity(context: dg.AssetExecutionContext, lakehouse: Lakehouse):
        """Per user per day counts, for the partitions' days (replaced as a whole)."""
        start, end = partition_dates(context)
        started = time.perf_counter()
        rows = user_daily_activity.compute_features(lakehouse.read(EVENTS), start, end)
        commit = lakehouse.replace_range(
            daily_contract.table_spec, rows, column="activity_date", start=start, end=end
        )
        seconds = time.perf_counter() - started
        yield _partition_result(
            context, DAILY_KEY, daily_contract, lakehouse, commit, "activity_date", seconds
        )

    return daily_activity


def _activity(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    daily_contract, activity_contract = user_daily_activity.CONTRACT, user_activity.CONTRACT

    # The first days' windows reach before the calendar: those upstream days do not exist
    # and are not waited for (the parameter is marked beta in dagster 1.13; it works).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        history = dg.TimeWindowPartitionMapping(
            start_offset=-user_activity.HISTORY_DAYS, allow_nonexistent_upstream_partitions=True
        )

    @dg.multi_asset(
        specs=[
            feature_asset_spec(
                ACTIVITY_KEY,
                activity_contract,
                deps=[dg.AssetDep(DAILY_KEY, partition_mapping=history)],
                automation_condition=dg.AutomationCondition.eager(),
            )
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        name="user_activity",
    )
    def activity(context: dg.AssetExecutionContext, lakehouse: Lakehouse):
        """Rolling windows for the partitions' days from the daily blocks they need, merged."""
        start, end = partition_dates(context)
        started = time.perf_counter()
        rows = user_activity.compute_features(lakehouse.read(daily_contract.table_spec), start, end)
        commit = lakehouse.merge(activity_contract.table_spec, rows)
        seconds = time.perf_counter() - started
        first_read = start - dt.timedelta(days=user_activity.HISTORY_DAYS)
        yield _partition_result(
            context,
            ACTIVITY_KEY,
            activity_contract,
            lakehouse,
            commit,
            "feature_date",
            seconds,
            daily_rows_read_from=first_read.isoformat(),
        )

    return activity


@dg.multi_asset(
    specs=[
        feature_asset_spec(
            PROFILE_KEY, user_profile.CONTRACT, deps=[dg.AssetKey(names.RAW_USERS_KEY)]
        )
    ],
    name="user_profile",
)
def user_profile_features(context: dg.AssetExecutionContext, lakehouse: Lakehouse):
    """Every version of every user from the SCD history, rebuilt whole."""
    spec = user_profile.CONTRACT.table_spec
    commit = lakehouse.overwrite(spec, user_profile.compute_features(lakehouse.read(USERS)))
    stats = read_back(lakehouse, spec, key="user_id")
    context.log.info("user_profile: %d versions of %d users", stats.rows, stats.keys)
    return dg.MaterializeResult(
        asset_key=PROFILE_KEY,
        metadata={
            **write_metadata(spec, commit, lakehouse.uri(spec), total_rows=stats.rows),
            "users": stats.keys,
        },
    )


def build_feature_checks() -> list[dg.AssetChecksDefinition]:
    return [
        *feature_table_checks(DAILY_KEY, user_daily_activity.CONTRACT, landed_kind=EVENTS_DIR),
        *feature_table_checks(ACTIVITY_KEY, user_activity.CONTRACT, landed_kind=EVENTS_DIR),
        *feature_table_checks(PROFILE_KEY, user_profile.CONTRACT, landed_kind=USERS_DIR),
    ]
