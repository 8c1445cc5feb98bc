"""``make run``: materialize the whole lifecycle on the embedded default, then summarize.

The run goes through the persistent Dagster instance under ``$DAGSTER_HOME``, so it shows up
in ``make ui`` afterwards with its materializations and check results. All partitions are
materialized in one run (the raw events backfill policy is single-run). Then:

- a retraining run stages a reseeded challenger per model (``programs/rollout``): churn's
  served as a 10 % canary, purchase propensity's as a shadow;
- each endpoint's gateway is started and sent replayed traffic for the scoring days
  (``programs/replay``: the store published day by day as it stood then);
- a run of the inference-log job ingests what the gateways logged;
- the model-quality job profiles the predictions whose outcomes matured (batch and served)
  and gives each canary verdict (reported only: acting is the opt-in autopilot's).
"""

from __future__ import annotations

import os
import sys
import time

import dagster as dg

from ml_assets import names
from ml_assets.definitions import build_definitions
from ml_assets.defs.metadata import table_key
from ml_assets.deployments import Settings, build_resources, current_settings
from ml_assets.lib.models.catalog import MODELS
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.serving.batch import predictions_table
from ml_assets.programs.lanes import engine_lane, main_tables
from ml_assets.programs.memory import PeakMemory
from ml_assets.programs.replay import (
    ReplayStore,
    gateway_process,
    replay_days,
    replay_past_days,
    scoring_days,
)
from ml_assets.programs.reporting import (
    check_rows,
    format_table,
    materialization_metadata,
    partition_metadata,
    run_check_results,
    step_failure,
)
from ml_assets.programs.rollout import stage_challengers
from ml_assets.programs.signals import keep_sigterm_deliverable
from ml_assets.resources.online_store import SqlOnlineStore


def run_main_job(
    settings: Settings,
    instance: dg.DagsterInstance,
    run_config: dict | None = None,
    *,
    launched_by: str = "make run",
) -> dg.ExecuteInProcessResult:
    """Every partition of every asset in one run; ``run_config`` adds op config (as the
    launchpad would), e.g. ``{"ops": {"models__churn_classifier": {"config": {...}}}}``."""
    defs = build_definitions(settings)
    job = defs.resolve_job_def(names.MAIN_JOB)
    keys = job.partitions_def.get_partition_keys()
    return job.execute_in_process(
        instance=instance,
        run_config={
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
            **(run_config or {}),
        },
        tags={
            # the UI's "Launched by" shows the ``user`` tag (else "Manually launched")
            "user": launched_by,
            "ml_assets/launched_by": launched_by,
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
        raise_on_error=False,
    )


REPLAYED_REQUESTS = {"demo": 3_000, "tiny": 200}  # per endpoint, over its replayed days
REPLAYED_DAYS = {"demo": 10, "tiny": 4}


def serve_traffic(settings: Settings, instance: dg.DagsterInstance) -> tuple[list[str], object]:
    """Each endpoint's gateway, started on a replay store of its own, sent traffic for the
    model's scoring days and stopped cleanly (its log drained); then a run of the
    inference-log job ingests what they logged."""
    resources = build_resources(settings)
    lakehouse = resources["lakehouse"]
    database = settings.home / "serving" / "replay-online.db"
    database.unlink(missing_ok=True)  # a replay starts from an empty store
    replay_store = SqlOnlineStore(database_url=f"sqlite:///{database}")
    env = {
        **os.environ,
        "ML_ASSETS_HOME": str(settings.home),
        "ML_ASSETS_SCALE": settings.scale,
        "ML_ASSETS_ONLINE_STORE_URL": replay_store.database_url,
        "ML_ASSETS_SERVING_CLOCK": "data",
    }
    lines = []
    for model in MODELS.values():
        if not resources["endpoint_deployer"].path(model.endpoint).exists():
            lines.append(f"{model.endpoint}: no endpoint config, no traffic sent")
            continue
        scored = scoring_days(predictions_table(model), lakehouse)
        if not scored:
            lines.append(f"{model.endpoint}: the batch scored no day yet, no traffic sent")
            continue
        days = replay_days(scored, REPLAYED_DAYS.get(settings.scale, 4))
        store = ReplayStore.read(replay_store, lakehouse, days)
        store.publish(days[0])  # the gateway is ready on a store that is not empty
        log = settings.home / "serving" / f"{model.endpoint}-gateway.log"
        with gateway_process(model.endpoint, env, log, settings.serving_token) as port:
            sent = replay_past_days(
                port,
                model.endpoint,
                store,
                days,
                REPLAYED_REQUESTS.get(settings.scale, 200),
                token=settings.serving_token,
            )
        lines.append(f"{model.endpoint}: {sent.describe()}")
    return lines, run_job(settings, instance, names.INFERENCE_LOG_JOB)


def run_job(settings: Settings, instance: dg.DagsterInstance, name: str):
    job = build_definitions(settings).resolve_job_def(name)
    return job.execute_in_process(
        instance=instance,
        tags={"user": "make run", "ml_assets/launched_by": "make run"},
        raise_on_error=False,
    )


def quality_summary(result: dg.ExecuteInProcessResult, model: ModelDeclaration) -> str:
    """The model-quality table and its check, and the canary verdict."""
    lines = []
    quality = materialization_metadata(result, "/".join(model.model_quality_key))
    if quality is None:
        lines.append(f"{model.model_quality_key[-1]}: not materialized")
    elif "windows" not in quality:
        lines.append(f"model quality: {quality.get('note')}")
    else:
        lines.append(
            f"model quality {model.model_quality_table}: {quality['windows']} daily windows, "
            f"{quality['predictions_profiled']} predictions with a matured outcome "
            f"({quality['predictions_profiled_now']} new), {quality['predictions_pending_outcome']}"
            f" pending (outcomes "
            f"through {quality['outcomes_through']}); latest champion window "
            f"{quality.get('latest_window', '-')} ({quality.get('latest_source', '-')}, "
            f"{quality.get('latest_rows', '-')} rows): ROC AUC "
            f"{quality.get('latest_roc_auc', '-')}, "
            f"log loss {quality.get('latest_log_loss', '-')} (floor {quality['floor_roc_auc']})"
        )
    check = next(
        (
            c
            for c in run_check_results(result)
            if c.check_name == names.CHECK_MODEL_QUALITY
            and c.asset_key == dg.AssetKey(model.model_quality_key)
        ),
        None,
    )
    if check is not None:
        lines.append(
            f"  {names.CHECK_MODEL_QUALITY}: {check.metadata['level'].value} ({check.description})"
        )
    verdict = materialization_metadata(result, "/".join(model.canary_verdict_key))
    if verdict is not None:
        lines.append(f"canary verdict: {verdict['verdict']}: {verdict['reason']}")
    return "\n".join(lines)


def inference_log_summary(result: dg.ExecuteInProcessResult, model: ModelDeclaration) -> str:
    logged = materialization_metadata(result, "/".join(model.inference_log_key))
    if logged is None:
        return f"{model.inference_log_key[-1]}: not materialized"
    per_status = ", ".join(f"{s}: {n}" for s, n in logged.get("requests_per_status", {}).items())
    return (
        f"inference log {logged['dagster/table_name']}: {logged['rows_ingested']} rows ingested "
        f"from {logged['files_ingested']} files ({logged['dagster/row_count']} in the table; "
        f"requests by status {per_status or 'none'}; gateway p50 "
        f"{logged.get('latency_p50_ms', '-')} ms, p99 {logged.get('latency_p99_ms', '-')} ms)"
    )


def table_summary(settings: Settings) -> list[list[object]]:
    lakehouse = build_resources(settings)["lakehouse"]
    rows = []
    for spec in main_tables():
        version = lakehouse.version(spec)
        count = lakehouse.read(spec).count() if version is not None else 0
        rows.append([str(spec.name), count, version, lakehouse.uri(spec).removeprefix("file://")])
    return rows


def champion_summary(result: dg.ExecuteInProcessResult, model: ModelDeclaration) -> str:
    """Which version is champion after the run, why, and its metrics on the test set."""
    key = dg.AssetKey(model.champion_key)
    champion = materialization_metadata(result, key.to_user_string())
    if champion is None:
        refused = step_failure(result, key.to_python_identifier())
        return f"champion: not moved. {refused or 'The promotion gate did not run.'}"
    metrics = ", ".join(
        f"{m.removeprefix('champion_test_')} {v}"
        for m, v in champion.items()
        if m.startswith("champion_test_")
    )
    return (
        f"champion: {champion['registered_model']} v{champion['champion_version']} "
        f"({champion['decision']}; mode {champion['mode']})\n"
        f"  test metrics: {metrics or 'not evaluated'}\n"
        f'  load it with mlflow.pyfunc.load_model("{champion["champion_uri"]}") '
        f"(MLflow store: make mlflow-ui)"
    )


def training_summary(result: dg.ExecuteInProcessResult, model: ModelDeclaration) -> str | None:
    training_set = model.training_set
    training = materialization_metadata(result, table_key(training_set.table_name).to_user_string())
    if training is None:
        return None
    return (
        f"{training_set.name}: {training['dagster/row_count']} rows (train "
        f"{training['rows_train']}, validation {training['rows_validation']}, test "
        f"{training['rows_test']}); built from {training['lineage']['table_versions']}; "
        f"content hash {training['content_hash'][:16]}"
    )


def serving_summary(result: dg.ExecuteInProcessResult, model: ModelDeclaration) -> str:
    """The endpoint config deployed and the batch predictions."""
    lines = []
    config = materialization_metadata(result, "/".join(model.endpoint_config_key))
    if config is not None:
        lines.append(
            f"endpoint {config['endpoint']}: {config['routes']} -> {config['deployed_to']} "
            f"(serve it: make serve ENDPOINT={model.endpoint})"
        )
    predictions = materialization_metadata(result, "/".join(model.predictions_key))
    if predictions is not None:
        lines.append(
            f"{model.predictions_key[-1]}: {predictions['users_scored']} users scored at "
            f"{predictions['scored_at']} by {predictions['model']}; mean {model.output} "
            f"{predictions[f'mean_{model.output}']}, {predictions['share_above_0_5']:.1%} "
            "above 0.5"
        )
    return "\n".join(lines) or "serving: not materialized in this run"


def online_summary(result: dg.ExecuteInProcessResult) -> str | None:
    online = materialization_metadata(result, "/".join(names.ONLINE_USER_FEATURES_KEY))
    if online is None:
        return None
    return (
        f"online store {online['online_store']}: user_activity {online['user_activity_rows']} "
        f"rows ({online['user_activity_inserted']} inserted, "
        f"{online['user_activity_updated']} updated), user_profile "
        f"{online['user_profile_rows']} rows"
    )


def drift_summary(result: dg.ExecuteInProcessResult, model: ModelDeclaration) -> str:
    """The latest feature drift window, its debounced status, and the score drift."""
    lines = []
    key = dg.AssetKey(model.feature_drift_key)
    drift = materialization_metadata(result, key.to_user_string())
    status = next(
        (
            c
            for c in run_check_results(result)
            if c.asset_key == key and c.check_name == names.CHECK_FEATURE_DRIFT
        ),
        None,
    )
    if drift is not None and "latest_window" in drift:
        level = "not checked" if status is None else status.metadata["level"].value
        latest = partition_metadata(result, key.to_user_string())[drift["latest_window"]]
        lines.append(
            f"feature drift: {drift['windows_compared']} windows compared with {drift['reference']}"
            f" on {drift['columns_compared']} columns; latest {drift['latest_window']}: "
            f"{latest['share_drifted']:.0%} drifted ({latest['drifted_columns']}), level {level}\n"
            f"  report: {latest['report']}"
        )
    elif drift is not None:
        lines.append(f"feature drift: {drift.get('note', 'no window compared')}")
    scores = materialization_metadata(result, "/".join(model.prediction_drift_key))
    if scores is not None:
        lines.append(
            f"prediction drift ({scores['model']}, {scores['scored_at']}): "
            f"{'DRIFTED' if scores['drifted'] else 'no drift'}, {scores['method']} "
            f"{scores['score']} (threshold {scores['threshold']}); mean "
            f"{scores['current_mean']} vs reference {scores['reference_mean']}\n"
            f"  report: {scores['report']}"
        )
    return "\n".join(lines) or "monitoring: not materialized in this run"


def model_summary(result: dg.ExecuteInProcessResult, model: ModelDeclaration) -> str:
    """One declared model's line after the run: training set, champion, serving, drift."""
    parts = [
        f"== {model.name} ({model.registered_model})",
        training_summary(result, model),
        champion_summary(result, model),
        serving_summary(result, model),
        drift_summary(result, model),
    ]
    return "\n".join(p for p in parts if p)


def main() -> int:
    keep_sigterm_deliverable()
    settings = current_settings()
    print(
        f"ml_assets: deployment={settings.deployment} engine={settings.engine} "
        f"scale={settings.scale} home={settings.home}"
    )
    with engine_lane(settings), PeakMemory() as memory:
        started = time.perf_counter()
        with dg.DagsterInstance.get() as instance:
            with PeakMemory() as job_memory:
                result = run_main_job(settings, instance)
            elapsed = time.perf_counter() - started
            staged = stage_challengers(settings, instance) if result.success else None
            traffic, logged = serve_traffic(settings, instance) if result.success else ([], None)
            judged = (
                run_job(settings, instance, names.MODEL_QUALITY_JOB) if logged is not None else None
            )
        tables = table_summary(settings)
    checks = run_check_results(result)
    print()
    print(format_table(["table", "rows", "delta version", "location"], tables))
    online = online_summary(result)
    if online:
        print()
        print(online)
    for model in MODELS.values():
        print()
        print(model_summary(result, model))
        if logged is not None:
            print(inference_log_summary(logged, model))
        if judged is not None:
            print(quality_summary(judged, model))
    if staged is not None:
        print()
        print("challengers: " + "; ".join(staged.lines))
    if traffic:
        print()
        print("replayed traffic: " + "; ".join(traffic))
    print()
    print(format_table(["asset", "check", "severity", "passed", "observed"], check_rows(checks)))
    failed = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    print()
    print(
        f"run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'} in {elapsed:.1f} s; "
        f"{len(checks)} checks, {len(failed)} failed (ERROR); {job_memory.result().describe()}"
    )
    print(f"make run as a whole: {memory.result().describe()}")
    later = [r for r in (logged, judged) if r is not None]
    later_failed = [
        c
        for r in later
        for c in run_check_results(r)
        if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
    ]
    later_ok = all(r.success for r in later) and not later_failed
    later_ok = later_ok and (staged is None or staged.ok)
    if not later_ok:
        print(
            "the challengers', inference-log or model-quality run failed: see the Dagster UI "
            "(make ui)"
        )
    return 0 if result.success and not failed and later_ok else 1


if __name__ == "__main__":
    sys.exit(main())
