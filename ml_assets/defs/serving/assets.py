"""The serving stage: the endpoint config (Databricks serving-endpoint shape) that the local
gateway honours, its checks, and batch predictions with the champion.

The checks read the config as deployed (the file), so a hand edit is checked too.
"""

import time

import dagster as dg
import numpy as np
from pydantic import Field

from ml_assets import names
from ml_assets.defs.metadata import check_result, table_asset_spec, write_metadata
from ml_assets.lib.features import user_activity, user_profile
from ml_assets.lib.models.churn_classifier import ENCODING, REGISTERED_MODEL
from ml_assets.lib.models.encoding import request_frame
from ml_assets.lib.quality import CheckOutcome
from ml_assets.lib.registry import aliases
from ml_assets.lib.registry.store import Registry
from ml_assets.lib.serving.batch import (
    PREDICTIONS,
    SCORED_AT,
    newest_feature_time,
    scoring_features,
)
from ml_assets.lib.serving.churn import REQUEST_KEY_TYPES, SERVABLE_INPUTS
from ml_assets.lib.serving.endpoint import (
    Endpoint,
    WorkloadSize,
    plan_endpoint,
    route_problems,
)
from ml_assets.lib.serving.validation import entity_problems, servable_problems
from ml_assets.lib.training_sets.churn import ENTITY_KEY
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.registry import ModelRegistry
from ml_assets.resources.serving import EndpointDeployer
from ml_assets.resources.spark import SparkResource

ACTIVITY_KEY = dg.AssetKey(names.USER_ACTIVITY_KEY)
CHAMPION_KEY = dg.AssetKey(names.CHURN_CLASSIFIER_CHAMPION_KEY)
PROFILE_KEY = dg.AssetKey(names.USER_PROFILE_KEY)
ENDPOINT_KEY = dg.AssetKey(names.CHURN_ENDPOINT_CONFIG_KEY)
PREDICTIONS_KEY = dg.AssetKey(names.CHURN_PREDICTIONS_KEY)


class EndpointConfig(dg.Config):
    canary_percentage: int = Field(10, ge=1, le=99, description="traffic to a pending challenger")
    workload_size: WorkloadSize = "Small"
    scale_to_zero_enabled: bool = True


@dg.asset(
    key=ENDPOINT_KEY,
    group_name=names.SERVING,
    deps=[CHAMPION_KEY],
    kinds={"json"},
    description="The churn endpoint's config in the Databricks serving-endpoints shape: the "
    "champion alone at 100 %, or champion and pending challenger split for a canary. Written "
    "to $ML_ASSETS_HOME/serving/<endpoint>.json, which the local gateway (make serve) honours.",
)
def churn_endpoint_config(
    context: dg.AssetExecutionContext,
    config: EndpointConfig,
    model_registry: ModelRegistry,
    endpoint_deployer: EndpointDeployer,
) -> dg.MaterializeResult:
    registry = model_registry.open()
    model = registry.full_name(REGISTERED_MODEL)
    champion = registry.by_alias(model, aliases.CHAMPION)
    if champion is None:
        raise dg.Failure(
            f"{model} has no champion to serve: materialize registry/churn_classifier_champion."
        )
    challenger = registry.by_alias(model, aliases.CHALLENGER)
    endpoint = plan_endpoint(
        names.CHURN_ENDPOINT,
        model,
        str(champion.version),
        None if challenger is None else str(challenger.version),
        canary_percentage=config.canary_percentage,
        workload_size=config.workload_size,
        scale_to_zero_enabled=config.scale_to_zero_enabled,
    )
    deployed = endpoint_deployer.deploy(endpoint)
    routes = endpoint.shares()
    context.log.info("%s %s -> %s: %s", endpoint.name, deployed.action, deployed.where, routes)
    return dg.MaterializeResult(
        metadata={
            "endpoint": endpoint.name,
            "deployed_to": dg.MetadataValue.url(deployed.where)
            if deployed.where.startswith(("http://", "https://"))
            else dg.MetadataValue.path(deployed.where),
            "deployment": deployed.action,
            "config": dg.MetadataValue.json(endpoint.body()),
            "routes": ", ".join(f"{k} {v}%" for k, v in routes.items()),
            "champion_version": int(champion.version),
            "challenger_version": None if challenger is None else int(challenger.version),
        }
    )


def _deployed(endpoint_deployer: EndpointDeployer) -> tuple[Endpoint | None, str | None]:
    try:
        return endpoint_deployer.deployed(names.CHURN_ENDPOINT), None
    except FileNotFoundError:
        return None, "No endpoint config is deployed: materialize serving/churn_endpoint_config."
    except ValueError as exc:  # pydantic's ValidationError and bad JSON
        return None, f"The deployed endpoint config is invalid: {exc}"


def _config_check(name: str, description: str, evaluate) -> dg.AssetChecksDefinition:
    """A blocking check of the deployed config; ``evaluate(endpoint, registry)``."""

    @dg.asset_check(asset=ENDPOINT_KEY, name=name, blocking=True, description=description)
    def _check(
        endpoint_deployer: EndpointDeployer, model_registry: ModelRegistry
    ) -> dg.AssetCheckResult:
        endpoint, error = _deployed(endpoint_deployer)
        if endpoint is None:
            return check_result(CheckOutcome(False, error))
        return check_result(evaluate(endpoint, model_registry.open()))

    return _check


def _outcome(problems: list[str], ok: str, observed: dict[str, object]) -> CheckOutcome:
    return CheckOutcome(
        not problems, "; ".join(problems) or ok, observed | {"problems": len(problems)}
    )


def _routes(endpoint: Endpoint, _: Registry) -> CheckOutcome:
    shares = endpoint.shares()
    return _outcome(
        route_problems(endpoint),
        f"routes {shares} sum to 100",
        {"total_percentage": sum(shares.values()), "routes": len(shares)},
    )


def _entities_ready(endpoint: Endpoint, registry: Registry) -> CheckOutcome:
    entities = endpoint.config.served_entities
    return _outcome(
        entity_problems(endpoint, registry),
        f"{len(entities)} served entities, all READY",
        {"served_entities": len(entities)},
    )


def _signatures_servable(endpoint: Endpoint, registry: Registry) -> CheckOutcome:
    return _outcome(
        servable_problems(endpoint, registry, SERVABLE_INPUTS, REQUEST_KEY_TYPES),
        "every served model's inputs are served by the online features",
        {"served_entities": len(endpoint.config.served_entities)},
    )


routes_sum_to_100 = _config_check(
    names.CHECK_ROUTES_SUM,
    "The deployed config parses (no unknown keys), its routes name served entities and their "
    "traffic percentages sum to 100.",
    _routes,
)
served_entities_ready = _config_check(
    names.CHECK_ENTITIES_READY,
    "Every served entity is an existing READY version of its registered model.",
    _entities_ready,
)
signatures_match_online_features = _config_check(
    names.CHECK_SIGNATURE_SERVABLE,
    "Every served model's input signature is made of what the gateway assembles: the online "
    "features (and what derives from them) plus the request keys, with the same types.",
    _signatures_servable,
)


@dg.multi_asset(
    specs=[
        table_asset_spec(
            PREDICTIONS_KEY,
            PREDICTIONS,
            group=names.SERVING,
            deps=[CHAMPION_KEY, ACTIVITY_KEY, PROFILE_KEY],
        )
    ],
    name="churn_predictions",
)
def churn_predictions(
    context: dg.AssetExecutionContext,
    lakehouse: Lakehouse,
    spark: SparkResource,
    model_registry: ModelRegistry,
) -> dg.MaterializeResult:
    started = time.perf_counter()
    registry = model_registry.open()
    model_name = registry.full_name(REGISTERED_MODEL)
    champion = registry.by_alias(model_name, aliases.CHAMPION)
    if champion is None:
        raise dg.Failure(f"{model_name} has no champion: nothing to score with.")
    activity, profile = user_activity.CONTRACT.table_spec, user_profile.CONTRACT.table_spec
    versions = {
        str(activity.name): lakehouse.version(activity),
        str(profile.name): lakehouse.version(profile),
    }
    at = newest_feature_time(lakehouse.read(activity, version=versions[str(activity.name)]))
    features = scoring_features(lakehouse, at, versions).toPandas()
    # the exact version, not the alias: the alias may move while this runs
    model = registry.load(model_name, champion.version)
    scores = np.asarray(model.predict(request_frame(features, ENCODING)), dtype="float64")
    scored = features[[ENTITY_KEY]].assign(
        **{
            SCORED_AT: features["label_ts"],
            "churn_probability": scores,
            "model_name": model_name,
            "model_version": int(champion.version),
            "user_activity_version": versions[str(activity.name)],
            "user_profile_version": versions[str(profile.name)],
        }
    )
    rows = spark.get_session().createDataFrame(scored)
    # merged on (user_id, scored_at): re-scoring the same time rewrites only what changed
    commit = lakehouse.merge(PREDICTIONS, rows.select(*PREDICTIONS.column_names))
    context.log.info(
        "scored %d users at %s with %s v%s", len(scored), at, model_name, champion.version
    )
    return dg.MaterializeResult(
        metadata={
            **write_metadata(
                PREDICTIONS,
                commit,
                lakehouse.uri(PREDICTIONS),
                total_rows=lakehouse.read(PREDICTIONS).count(),
            ),
            "users_scored": len(scored),
            "scored_at": at.isoformat(),
            "model": f"{model_name} v{champion.version}",
            "feature_versions": dg.MetadataValue.json(versions),
            "mean_churn_probability": round(float(scores.mean()), 4),
            "share_above_0_5": round(float((scores >= 0.5).mean()), 4),
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
