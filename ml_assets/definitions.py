"""The Dagster code location: ``defs = build_definitions(current_settings())``.

The shared stages (landing, raw, features, the online store) are built once; every declared
model (``lib/models/catalog.MODELS``) gets its line through the same factories: labels and
training set, the model, its registered version and gated champion, its endpoint config and
batch predictions, its feature and prediction drift (and, on Databricks, its Lakehouse
Monitoring monitor), with their checks and sensors.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from ml_assets import names
from ml_assets.defs.automation import (
    automation_condition_sensor,
    build_drift_retraining_sensor,
    build_endpoint_config_sensor,
    build_jobs,
    build_landed_events_sensor,
    build_quality_sensor,
    build_schedules,
    daily_keys,
    quality_keys,
    weekly_keys,
)
from ml_assets.defs.conventions import freshness_by_schedule, with_conventions
from ml_assets.defs.features.assets import (
    build_feature_assets,
    build_feature_checks,
    user_profile_features,
)
from ml_assets.defs.features.online import online_offline_consistent, online_user_features
from ml_assets.defs.landing.assets import demo_source, every_requested_day_landed
from ml_assets.defs.maintenance import build_maintenance, table_assets
from ml_assets.defs.models.assets import build_model
from ml_assets.defs.monitoring.assets import build_monitoring
from ml_assets.defs.monitoring.lakehouse import build_lakehouse_monitor
from ml_assets.defs.monitoring.quality import build_quality_monitoring
from ml_assets.defs.partitions import daily_partitions
from ml_assets.defs.raw.assets import build_raw_checks, build_raw_events, raw_users
from ml_assets.defs.registry.assets import build_registry, rollback_champion
from ml_assets.defs.serving.assets import build_serving
from ml_assets.defs.training_sets.assets import build_training_set_definitions
from ml_assets.deployments import Settings, build_resources, current_settings
from ml_assets.lib.models.catalog import MODELS
from ml_assets.lib.models.declaration import ModelDeclaration


def model_definitions(
    model: ModelDeclaration,
    days: dg.PartitionsDefinition,
    *,
    lakehouse_monitoring: bool,
    freshness: Mapping[dg.AssetKey, dg.FreshnessPolicy] | None = None,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """One declared model's whole line, from its labels to the drift of its predictions, its
    assets owned by the training set's team and tagged with the model."""
    assets, checks = build_training_set_definitions(model.training_set)
    assets.append(build_model(model))
    for more_assets, more_checks in (
        build_registry(model),
        build_serving(model),
        build_monitoring(model, days),
        build_quality_monitoring(model),
    ):
        assets += more_assets
        checks += more_checks
    if lakehouse_monitoring:  # bound on Databricks only
        assets.append(build_lakehouse_monitor(model))
    return with_conventions(assets, model=model, freshness=freshness), checks


def build_definitions(settings: Settings) -> dg.Definitions:
    days = daily_partitions(*settings.calendar)
    models = list(MODELS.values())
    jobs = build_jobs(models)
    by_name = {job.name: job for job in jobs}
    resources = build_resources(settings)
    freshness = freshness_by_schedule(
        [*daily_keys(models), *quality_keys(models)], weekly_keys(models)
    )
    model_assets, model_checks = [], []
    for model in models:
        assets, checks = model_definitions(
            model,
            days,
            lakehouse_monitoring="lakehouse_monitoring" in resources,
            freshness=freshness,
        )
        model_assets += assets
        model_checks += checks
    shared = [
        demo_source,
        raw_users,
        build_raw_events(days),
        *build_feature_assets(days),
        user_profile_features,
        online_user_features,
    ]
    assets = [*with_conventions(shared, freshness=freshness), *model_assets]
    maintenance_job, maintenance_schedule = build_maintenance(table_assets(assets))
    return dg.Definitions(
        assets=assets,
        asset_checks=[
            *build_raw_checks(),
            *build_feature_checks(),
            *model_checks,
            online_offline_consistent,
            every_requested_day_landed,
        ],
        jobs=[*jobs, rollback_champion, maintenance_job],
        schedules=[*build_schedules(jobs, models), maintenance_schedule],
        sensors=[
            build_landed_events_sensor(days),
            *(build_endpoint_config_sensor(m) for m in models),
            *(build_drift_retraining_sensor(m) for m in models),
            *(
                build_quality_sensor(m, by_name[names.RETRAINING_JOB], rollback_champion)
                for m in models
            ),
            automation_condition_sensor,
        ],
        resources=resources,
        # One process per run, as make run does: the embedded engine, MLflow and the imports
        # start once per run, not once per step (a step process takes seconds to start), and
        # Spark already uses every core inside a step.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    # The environment is read here, when Dagster loads the code location, never at import.
    return build_definitions(current_settings())
