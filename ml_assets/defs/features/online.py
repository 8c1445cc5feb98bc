"""``features/online_user_features``: the latest row per user of every feature table the user
models look up (``USER_LOOKUPS``), published to the online store; and the training-serving
skew check.

Publishing is incremental: only the keys whose latest row changed are written (a second
publish of unchanged tables writes nothing). ``online_offline_consistent`` assembles the
features of a sample of users from the online store at the data's clock (the newest
published feature time) and compares them with the point-in-time join of the *current*
offline tables at the same time: a store that was not republished, or that computes
differently, fails it.
"""

import hashlib
import time

import dagster as dg
import pandas as pd

from ml_assets import names
from ml_assets.defs.features.assets import ACTIVITY_KEY, PROFILE_KEY
from ml_assets.defs.metadata import check_result
from ml_assets.lib.features import user_activity, user_profile
from ml_assets.lib.quality import CheckOutcome
from ml_assets.lib.serving.checks import online_matches_offline
from ml_assets.lib.serving.online import latest_rows, online_frame
from ml_assets.lib.serving.user_features import LOOKUP_CONTRACTS, user_features
from ml_assets.lib.training_sets.lookups import build_training_set
from ml_assets.lib.training_sets.users import (
    ACTIVITY_MATCHED_TS,
    ENTITY_KEY,
    LABEL_TS,
    PROFILE_MATCHED_TS,
    USER_LOOKUPS,
    USER_MODEL_FEATURES,
    with_account_age,
)
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.online_store import OnlineStore, online_table_name

ONLINE_KEY = dg.AssetKey(names.ONLINE_USER_FEATURES_KEY)
ONLINE_CONTRACTS = LOOKUP_CONTRACTS  # every table the user lookups read
SKEW_SAMPLE = 200
COMPARED = (*USER_MODEL_FEATURES, ACTIVITY_MATCHED_TS, PROFILE_MATCHED_TS)


@dg.asset(
    key=ONLINE_KEY,
    group_name=names.FEATURES,
    deps=[ACTIVITY_KEY, PROFILE_KEY],
    kinds={"sql"},
    description="The latest row per user of user_activity and user_profile in the online store "
    "(SQLite under ML_ASSETS_HOME, or PostgreSQL), written incrementally; read by the serving "
    "gateway with the training set's lookups (lookback, defaults).",
)
def online_user_features(
    context: dg.AssetExecutionContext, lakehouse: Lakehouse, online_store: OnlineStore
) -> dg.MaterializeResult:
    started = time.perf_counter()
    metadata: dict[str, object] = {"online_store": online_store.display_url()}
    for contract in ONLINE_CONTRACTS:
        spec = contract.table_spec
        version = lakehouse.version(spec)
        rows = latest_rows(lakehouse.read(spec, version=version), contract).toPandas()
        published = online_store.publish(contract, online_frame(rows, contract), version)
        short = spec.name.table
        metadata |= {
            f"{short}_rows": published.rows,
            f"{short}_inserted": published.inserted,
            f"{short}_updated": published.updated,
            f"{short}_deleted": published.deleted,
            f"{short}_unchanged": published.unchanged,
            f"{short}_delta_version": version,
            f"{short}_online_table": online_table_name(contract),
        }
        context.log.info(
            "%s v%s -> online: %d rows, %d inserted, %d updated, %d deleted, %d unchanged",
            contract.name,
            version,
            published.rows,
            published.inserted,
            published.updated,
            published.deleted,
            published.unchanged,
        )
    metadata["seconds"] = round(time.perf_counter() - started, 2)
    return dg.MaterializeResult(metadata=metadata)


def _sample(user_ids: pd.Series, size: int) -> list[int]:
    """The ``size`` users with the smallest hash: deterministic, spread over the key range."""
    return sorted(user_ids.unique(), key=lambda u: hashlib.sha1(str(u).encode()).digest())[:size]


@dg.asset_check(
    asset=ONLINE_KEY,
    name=names.CHECK_ONLINE_OFFLINE,
    blocking=True,
    description="For a sample of users, the online features (as the gateway assembles them) "
    "equal the point-in-time join of the current offline tables at the same time.",
)
def online_offline_consistent(
    lakehouse: Lakehouse, online_store: OnlineStore
) -> dg.AssetCheckResult:
    at = online_store.newest_feature_time(user_activity.CONTRACT)  # the data's clock
    if at is None:
        return check_result(
            CheckOutcome(False, "The online store holds no user_activity rows: materialize it.")
        )
    profile = lakehouse.read(user_profile.CONTRACT.table_spec)  # every user, for the sample
    users = _sample(profile.select(ENTITY_KEY).toPandas()[ENTITY_KEY], SKEW_SAMPLE)
    online = user_features(
        users, at, {str(c.name): online_store.read(c, users) for c in ONLINE_CONTRACTS}
    )
    spine = profile.sparkSession.createDataFrame(
        pd.DataFrame({ENTITY_KEY: users, LABEL_TS: [at] * len(users)})
    )
    offline = with_account_age(
        build_training_set(spine, USER_LOOKUPS, label=None, tables=lakehouse).df
    ).toPandas()
    outcome = online_matches_offline(online, offline, ENTITY_KEY, COMPARED)
    observed = {
        **outcome.observed,
        "at": at.isoformat(),
        **{
            f"{c.table_spec.name.table}_published_version": (online_store.publication(c) or {}).get(
                "delta_version"
            )
            for c in ONLINE_CONTRACTS
        },
        **{
            f"{c.table_spec.name.table}_current_version": lakehouse.version(c.table_spec)
            for c in ONLINE_CONTRACTS
        },
    }
    return check_result(CheckOutcome(outcome.passed, outcome.description, observed))
