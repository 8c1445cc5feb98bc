"""Every feature table contract, by table name: what a training-set lookup resolves against."""

from __future__ import annotations

from collections.abc import Mapping

from ml_assets.lib.features import user_activity, user_daily_activity, user_profile
from ml_assets.lib.features.contracts import FeatureTableContract
from ml_assets.lib.lakehouse import TableId

CONTRACTS: Mapping[str, FeatureTableContract] = {
    c.name: c for c in (user_daily_activity.CONTRACT, user_activity.CONTRACT, user_profile.CONTRACT)
}


def contract_for(
    table_name: str, contracts: Mapping[str, FeatureTableContract] | None = None
) -> FeatureTableContract:
    known = CONTRACTS if contracts is None else contracts
    name = str(TableId.parse(table_name))
    if name not in known:
        raise KeyError(
            f"No feature table contract for {table_name!r}; known feature tables: {sorted(known)}. "
            "Declare a FeatureTableContract and add it to ml_assets.lib.features.registry."
        )
    return known[name]
