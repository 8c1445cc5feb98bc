"""The serving stage, for every declared model (``build_serving(model)``): the endpoint config
(Databricks serving-endpoint shape) that the local gateway honours, its checks, and batch
predictions with the champion.

The checks read the config as deployed (the file), so a hand edit is checked too.
"""

import datetime as dt
import time
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.defs.checks import table_check
from ml_assets.defs.metadata import check_result, table_asset_spec, write_metadata
from ml_assets.defs.serving.inference_log import build_inference_log
from ml_assets.lib.features import user_activity, user_profile
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.models.encoding import request_frame
from ml_assets.lib.quality import CheckOutcome
from ml_assets.lib.registry import aliases
from ml_assets.lib.registry.store import Registry
from ml_assets.lib.serving.batch import (
    SCORED_AT,
    eligible_features,
    feature_versions,
    held_out_from,
    newest_batch_valid,
    predictions_table,
    scoring_times,
)
from ml_assets.lib.serving.endpoint import (
    Endpoint,
    WorkloadSize,
    plan_endpoint,
    route_problems,
)
from ml_assets.lib.serving.user_features import REQUEST_KEY_TYPES, SERVABLE_INPUTS
from ml_assets.lib.serving.validation import entity_problems, servable_problems
from ml_assets.lib.training_sets.users import ENTITY_KEY
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.registry import ModelRegistry
from ml_assets.resources.serving import EndpointDeployer
from ml_assets.resources.spark import SparkResource

ACTIVITY_KEY = dg.AssetKey(names.USER_ACTIVITY_KEY)
PROFILE_KEY = dg.AssetKey(names.USER_PROFILE_KEY)


def endpoint_config(model: ModelDeclaration) -> type[dg.Config]:
    """The endpoint's launchpad settings; the canary share defaults to the declared one."""

    class EndpointConfig(dg.Config):
        canary_percentage: int = Field(
            model.canary_percentage,
            ge=1,
            le=99,
            description="traffic to a pending challenger",
        )
        shadow: bool = Field(
            False,
            description="serve a pending challenger in shadow mode instead: 0 % of the "
            "traffic, a copy of every request scored and logged, never returned",
        )
        workload_size: WorkloadSize = Field("Small", description="Databricks workload size")
        scale_to_zero_enabled: bool = Field(True, description="Databricks scale to zero")

    EndpointConfig.__name__ = f"{model.stem}_endpoint_config"
    return EndpointConfig


def build_endpoint_config(model: ModelDeclaration) -> dg.AssetsDefinition:
    champion_key = dg.AssetKey(model.champion_key)
    Config = endpoint_config(model)

    @dg.asset(
        key=dg.AssetKey(model.endpoint_config_key),
        group_name=names.SERVING,
        deps=[champion_key],
        kinds={"json"},
        description=f"The {model.endpoint} endpoint's config in the Databricks serving-endpoints "
        "shape: the champion alone at 100 %, or champion and pending challenger split for a "
        "canary. Written to $ML_ASSETS_HOME/serving/<endpoint>.json, which the local gateway "
        "(make serve) honours.",
    )
    def _endpoint_config(
        context: dg.AssetExecutionContext,
        config: Config,
        model_registry: ModelRegistry,
        endpoint_deployer: EndpointDeployer,
    ) -> dg.MaterializeResult:
        registry = model_registry.open()
        name = registry.full_name(model.registered_model)
        champion = registry.by_alias(name, aliases.CHAMPION)
        if champion is None:
            raise dg.Failure(
                f"{name} has no champion to serve: materialize {champion_key.to_user_string()}."
            )
        challenger = registry.by_alias(name, aliases.CHALLENGER)
        endpoint = plan_endpoint(
            model.endpoint,
            name,
            str(champion.version),
            None if challenger is None else str(challenger.version),
            canary_percentage=config.canary_percentage,
            shadow=config.shadow,
            workload_size=config.workload_size,
            scale_to_zero_enabled=config.scale_to_zero_enabled,
        )
        deployed = endpoint_deployer.deploy(endpoint)
        context.log.info(
            "%s %s -> %s: %s", endpoint.name, deployed.action, deployed.where, endpoint.shares()
        )
        return dg.MaterializeResult(
            metadata=_endpoint_metadata(endpoint, deployed, champion, challenger)
        )

    return _endpoint_config


def _endpoint_metadata(endpoint: Endpoint, deployed, champion, challenger) -> dict[str, object]:
    where = deployed.where
    return {
        "endpoint": endpoint.name,
        "deployed_to": dg.MetadataValue.url(where)
        if where.startswith(("http://", "https://"))
        else dg.MetadataValue.path(where),
        "deployment": deployed.action,
        "config": dg.MetadataValue.json(endpoint.body()),
        "routes": ", ".join(f"{k} {v}%" for k, v in endpoint.shares().items()),
        "champion_version": dg.MetadataValue.text(str(champion.version)),
        "challenger_version": dg.MetadataValue.text(
            "none" if challenger is None else str(challenger.version)
        ),
    }


def _deployed(
    endpoint_deployer: EndpointDeployer, model: ModelDeclaration
) -> tuple[Endpoint | None, str | None]:
    try:
        return endpoint_deployer.deployed(model.endpoint), None
    except FileNotFoundError:
        key = dg.AssetKey(model.endpoint_config_key).to_user_string()
        return None, f"No endpoint config is deployed: materialize {key}."
    except ValueError as exc:  # pydantic's ValidationError and bad JSON
        return None, f"The deployed endpoint config is invalid: {exc}"


def _config_check(
    model: ModelDeclaration, name: str, description: str, evaluate
) -> dg.AssetChecksDefinition:
    """A blocking check of the deployed config; ``evaluate(endpoint, registry)``."""

    @dg.asset_check(
        asset=dg.AssetKey(model.endpoint_config_key),
        name=name,
        blocking=True,
        description=description,
    )
    def _check(
        endpoint_deployer: EndpointDeployer, model_registry: ModelRegistry
    ) -> dg.AssetCheckResult:
        endpoint, error = _deployed(endpoint_deployer, model)
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


CONFIG_CHECKS = (
    (
        names.CHECK_ROUTES_SUM,
        "The deployed config parses (no unknown keys), its routes name served entities and "
        "their traffic percentages sum to 100.",
        _routes,
    ),
    (
        names.CHECK_ENTITIES_READY,
        "Every served entity is an existing READY version of its registered model.",
        _entities_ready,
    ),
    (
        names.CHECK_SIGNATURE_SERVABLE,
        "Every served model's input signature is made of what the gateway assembles: the "
        "online features (and what derives from them) plus the request keys, with the same "
        "types.",
        _signatures_servable,
    ),
)


def predictions_config(model: ModelDeclaration) -> type[dg.Config]:
    class PredictionsConfig(dg.Config):
        since_test_start: bool = Field(
            True,
            description="Also score every feature time from the champion's test window start "
            "that this version has not scored yet (days it never trained on, whose outcomes "
            "mature one by one: what model_quality judges). Off: the newest time only.",
        )

    PredictionsConfig.__name__ = f"{model.stem}_predictions_config"
    return PredictionsConfig


def build_predictions(model: ModelDeclaration) -> dg.AssetsDefinition:
    table, key = predictions_table(model), dg.AssetKey(model.predictions_key)
    deps = [dg.AssetKey(model.champion_key), ACTIVITY_KEY, PROFILE_KEY]
    Config = predictions_config(model)

    @dg.multi_asset(
        specs=[table_asset_spec(key, table, group=names.SERVING, deps=deps)],
        name=model.predictions_key[-1],
    )
    def _predictions(
        context: dg.AssetExecutionContext,
        config: Config,
        lakehouse: Lakehouse,
        spark: SparkResource,
        model_registry: ModelRegistry,
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        registry = model_registry.open()
        name = registry.full_name(model.registered_model)
        champion = registry.by_alias(name, aliases.CHAMPION)
        if champion is None:
            raise dg.Failure(f"{name} has no champion: nothing to score with.")
        since = held_out_from(registry.run(champion).data.tags)
        batch = _score(
            lakehouse,
            registry,
            model,
            name,
            champion.version,
            since if config.since_test_start else None,
        )
        rows = spark.get_session().createDataFrame(batch.scored).select(*table.column_names)
        # merged on (user_id, scored_at): re-scoring a time rewrites only what changed
        commit = lakehouse.merge(table, rows)
        newest = batch.scored[batch.scored[SCORED_AT] == batch.newest]
        context.log.info(
            "scored %d rows at %d feature time(s) (newest %s: %d users) with %s v%s",
            len(batch.scored),
            len(batch.times),
            batch.newest,
            len(newest),
            name,
            champion.version,
        )
        scores = newest[model.output]
        return dg.MaterializeResult(
            metadata={
                **write_metadata(
                    table, commit, lakehouse.uri(table), total_rows=lakehouse.read(table).count()
                ),
                "users_scored": len(newest),
                "scored_at": batch.newest.isoformat(),
                "rows_scored": len(batch.scored),
                "scoring_times": len(batch.times),
                "scored_since": dg.MetadataValue.text(
                    batch.times[0].date().isoformat() if batch.times else "none"
                ),
                "model": f"{name} v{champion.version}",
                "feature_versions": dg.MetadataValue.json(batch.versions),
                f"mean_{model.output}": round(float(scores.mean()), 4),
                "share_above_0_5": round(float((scores >= 0.5).mean()), 4),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )

    return _predictions


@dataclass(frozen=True)
class Batch:
    versions: dict[str, int]
    times: list[dt.datetime]
    newest: dt.datetime
    scored: pd.DataFrame


def _score(
    lakehouse: Lakehouse,
    registry: Registry,
    model: ModelDeclaration,
    name: str,
    version,
    since: dt.date | None,
) -> Batch:
    """The eligible users at each scoring time (the newest, and from ``since`` the ones this
    version has not scored), scored by ``version`` (the exact version, not the alias: the
    alias may move while this runs)."""
    activity = user_activity.CONTRACT.table_spec
    versions = feature_versions(lakehouse)
    ts = user_activity.CONTRACT.timestamp_key
    features_at = [
        r[0]
        for r in lakehouse.read(activity, version=versions[str(activity.name)])
        .select(ts)
        .distinct()
        .collect()
    ]
    if not features_at:
        raise dg.Failure(f"{activity.name} is empty: there is nobody to score.")
    times = scoring_times(features_at, since, _scored_by(lakehouse, model, int(version)))
    features = eligible_features(lakehouse, times, versions).toPandas()
    loaded = registry.load(name, version)
    scores = np.asarray(loaded.predict(request_frame(features, model.encoding)), dtype="float64")
    scored = features[[ENTITY_KEY]].assign(
        **{
            SCORED_AT: features["label_ts"],
            model.output: scores,
            "model_name": name,
            "model_version": int(version),
            "user_activity_version": versions[str(activity.name)],
            "user_profile_version": versions[str(user_profile.CONTRACT.name)],
        }
    )
    return Batch(versions, times, max(features_at), scored)


def _scored_by(lakehouse: Lakehouse, model: ModelDeclaration, version: int) -> list[dt.datetime]:
    """The scoring times whose batch ``version`` already scored."""
    table = predictions_table(model)
    if lakehouse.version(table) is None:
        return []
    return [
        r[0]
        for r in lakehouse.read(table)
        .groupBy(SCORED_AT)
        .agg(F.min("model_version").alias("lo"), F.max("model_version").alias("hi"))
        .where((F.col("lo") == version) & (F.col("hi") == version))
        .select(SCORED_AT)
        .collect()
    ]


def build_serving(
    model: ModelDeclaration,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """The endpoint config with its checks, batch predictions with the champion, and the
    inference log of the gateway's answers."""
    checks = [_config_check(model, *check) for check in CONFIG_CHECKS]
    checks.append(
        table_check(
            dg.AssetKey(model.predictions_key),
            names.CHECK_PREDICTIONS_VALID,
            f"The newest batch of {model.predictions_table}: every score a probability in "
            "[0, 1], exactly one row per user eligible at its scoring time (recounted from the "
            "user_activity version the batch names), and one model version named on every "
            "row. A failure means the batch cannot be trusted downstream (wrong population, "
            "lost or doubled users, or an unattributable score).",
            lambda lakehouse: newest_batch_valid(lakehouse, model),
        )
    )
    assets = [build_endpoint_config(model), build_predictions(model), build_inference_log(model)]
    return assets, checks
