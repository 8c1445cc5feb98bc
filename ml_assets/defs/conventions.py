"""Dagster's own fields on every asset, applied in one place (``build_definitions``): owners,
the ``stage`` and ``model`` tags, and a freshness policy for every asset a schedule keeps fresh.

- **Owners**: the owning team of the asset's table (``TableSpec.owner``, the ``owner`` entry of
  its metadata), else of the model's training set, as a Dagster team (``team:ml-platform``).
- **Tags**: ``stage`` is the asset key's first part (landing, raw, features, ...);
  ``model`` the declared model whose line the asset belongs to (the shared stages have none).
  Both are filterable in the UI's asset catalog and selectable (``tag:model=<model name>``).
- **Freshness**: Dagster's ``FreshnessPolicy`` (evaluated by the daemon when the instance
  enables ``freshness``, as ``deploy/dagster.yaml`` does): the daily schedule's assets must
  have been materialized in the 24 hours before 03:00 UTC each day, the weekly retraining
  schedule's in the 7 days before Monday 06:00 UTC. These say when the *run* happened; the
  ``fresh`` checks stay, because they judge the *data* (the newest event time against the
  newest landed day), which a run on stale files would not change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.training_sets.declaration import DEFAULT_OWNER

STAGE_TAG = "stage"
MODEL_TAG = "model"

DAILY_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 3 * * *", lower_bound_delta=dt.timedelta(hours=24), timezone="UTC"
)
WEEKLY_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 6 * * 1", lower_bound_delta=dt.timedelta(days=7), timezone="UTC"
)

AssetsLike = dg.AssetsDefinition | dg.AssetSpec


def team(owner: str) -> str:
    """A team name as Dagster's owners field takes it."""
    return owner if owner.startswith("team:") or "@" in owner else f"team:{owner}"


def with_conventions(
    assets: Iterable[AssetsLike],
    *,
    model: ModelDeclaration | None = None,
    freshness: Mapping[dg.AssetKey, dg.FreshnessPolicy] | None = None,
) -> list[AssetsLike]:
    """The same assets, each spec with its owners, tags and freshness policy."""
    default_owner = model.training_set.owner if model is not None else DEFAULT_OWNER
    policies = freshness or {}

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        owner = str((spec.metadata or {}).get("owner") or default_owner)
        tags = {**(spec.tags or {}), STAGE_TAG: spec.key.path[0]}
        if model is not None:
            tags[MODEL_TAG] = model.name
        spec = spec.replace_attributes(owners=[team(owner)], tags=tags)
        policy = policies.get(spec.key)
        return spec if policy is None else dg.apply_freshness_policy(spec, policy)

    return list(dg.map_asset_specs(apply, list(assets)))


def freshness_by_schedule(
    daily: Sequence[dg.AssetKey], weekly: Sequence[dg.AssetKey]
) -> dict[dg.AssetKey, dg.FreshnessPolicy]:
    return {**{k: WEEKLY_FRESHNESS for k in weekly}, **{k: DAILY_FRESHNESS for k in daily}}
