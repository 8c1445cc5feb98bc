"""The Dagster code location: ``defs = build_definitions(current_settings())``."""

from __future__ import annotations

import dagster as dg

from ml_assets.defs.automation import (
    automation_condition_sensor,
    build_jobs,
    build_landed_events_sensor,
    build_schedules,
    drift_retraining_sensor,
    endpoint_config_sensor,
)
from ml_assets.defs.features.assets import (
    build_feature_assets,
    build_feature_checks,
    user_profile_features,
)
from ml_assets.defs.features.online import online_offline_consistent, online_user_features
from ml_assets.defs.landing.assets import demo_source
from ml_assets.defs.maintenance import build_maintenance, table_assets
from ml_assets.defs.models.assets import build_model
from ml_assets.defs.monitoring.assets import (
    build_feature_drift,
    feature_drift_within_limits,
    prediction_drift,
)
from ml_assets.defs.monitoring.lakehouse import churn_predictions_lakehouse_monitor
from ml_assets.defs.partitions import daily_partitions
from ml_assets.defs.raw.assets import build_raw_checks, build_raw_events, raw_users
from ml_assets.defs.registry.assets import (
    champion_alias_consistent,
    churn_classifier_champion,
    churn_classifier_version,
    rollback_champion,
)
from ml_assets.defs.serving.assets import (
    churn_endpoint_config,
    churn_predictions,
    routes_sum_to_100,
    served_entities_ready,
    signatures_match_online_features,
)
from ml_assets.defs.training_sets.assets import build_training_set_definitions
from ml_assets.deployments import Settings, build_resources, current_settings
from ml_assets.lib.models.catalog import MODELS
from ml_assets.lib.source import SCALES


def build_definitions(settings: Settings) -> dg.Definitions:
    days = daily_partitions(SCALES[settings.scale])
    jobs = build_jobs()
    model_assets, model_checks = [], []
    for model in MODELS.values():
        training_assets, training_checks = build_training_set_definitions(model.training_set)
        model_assets += [*training_assets, build_model(model)]
        model_checks += training_checks
    assets = [
        demo_source,
        raw_users,
        build_raw_events(days),
        *build_feature_assets(days),
        user_profile_features,
        online_user_features,
        *model_assets,
        churn_classifier_version,
        churn_classifier_champion,
        churn_endpoint_config,
        churn_predictions,
        build_feature_drift(days),
        prediction_drift,
    ]
    resources = build_resources(settings)
    if "lakehouse_monitoring" in resources:  # bound on Databricks only
        assets.append(churn_predictions_lakehouse_monitor)
    maintenance_job, maintenance_schedule = build_maintenance(table_assets(assets))
    return dg.Definitions(
        assets=assets,
        asset_checks=[
            *build_raw_checks(),
            *build_feature_checks(),
            *model_checks,
            champion_alias_consistent,
            online_offline_consistent,
            routes_sum_to_100,
            served_entities_ready,
            signatures_match_online_features,
            feature_drift_within_limits,
        ],
        jobs=[*jobs, rollback_champion, maintenance_job],
        schedules=[*build_schedules(jobs), maintenance_schedule],
        sensors=[
            build_landed_events_sensor(days),
            endpoint_config_sensor,
            drift_retraining_sensor,
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
