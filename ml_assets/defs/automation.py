"""Jobs, schedules and sensors: what runs when.

- ``ml_lifecycle_job``: everything (``make run``, ``make check``).
- ``landed_events_sensor``: each newly landed day of event files requests one run of
  ``raw/events`` over that day and the days whose late arrivals it may carry (the late window),
  keyed by the landed day, so a day is never requested twice (the cursor is the newest day seen).
- ``daily_features_schedule``: each day, the raw events and daily feature partitions of the day
  before.
- ``weekly_retraining_schedule``: Mondays, every declared model's labels through promotion, its
  endpoint config and batch predictions, and the online store.
- ``<stem>_endpoint_config_sensor`` (one per declared model): when the model's champion or
  challenger alias moves (a promotion, a rollback, a new version), its endpoint config is
  rewritten; the gateway picks it up.
- ``<stem>_drift_retraining_sensor`` (one per declared model): when the model's
  ``feature_drift_within_limits`` reports an ERROR, that model's line of the retraining job runs
  (through the promotion gate), once per breach: the breach is named by its first window,
  which is the run key and the cursor.
- ``model_quality_job`` / ``model_quality_schedule`` (daily, 02:00 UTC): every model's quality
  on the outcomes matured since (predictions and the inference log joined with them), and the
  verdict on a pending canary or shadow (reported only). ``canary_autopilot_schedule`` (02:30
  UTC) is the opt-in automation: the same job with the verdicts' ``act: true``.
- ``<stem>_model_quality_sensor`` (one per declared model): when ``model_quality_within_limits``
  reports an ERROR, it acts on the diagnosis once per breach: a rollout regression runs
  ``rollback_champion`` (the registry's audited path), decay runs the model's line of the
  retraining job. The breach is named by the champion version and its first window.
- ``automation_condition_sensor``: the declarative conditions on the assets (features and the
  drift window follow a newly materialized raw/events partition; the registry steps run only
  when their upstream blocking checks passed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import dagster as dg

from ml_assets import names
from ml_assets.defs.metadata import table_key
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.registry import aliases
from ml_assets.lib.source import EVENTS_DIR
from ml_assets.resources.landing import LandingZone
from ml_assets.resources.registry import ModelRegistry

EVENTS_KEY = dg.AssetKey(names.RAW_EVENTS_KEY)
DAILY_FEATURE_KEYS = [
    dg.AssetKey(names.RAW_EVENTS_KEY),
    dg.AssetKey(names.RAW_EVENTS_QUARANTINE_KEY),
    dg.AssetKey(names.USER_DAILY_ACTIVITY_KEY),
    dg.AssetKey(names.USER_ACTIVITY_KEY),
]
SHARED_RETRAINING_KEYS = [
    dg.AssetKey(names.USER_PROFILE_KEY),
    dg.AssetKey(names.ONLINE_USER_FEATURES_KEY),
]


def retraining_keys(model: ModelDeclaration) -> list[dg.AssetKey]:
    """One model's line from labels to batch predictions and their drift."""
    training_set = model.training_set
    return [
        table_key(str(training_set.labels.table.name)),
        table_key(training_set.table_name),
        *(
            dg.AssetKey(k)
            for k in (
                model.model_key,
                model.version_key,
                model.champion_key,
                model.endpoint_config_key,
                model.predictions_key,
                model.prediction_drift_key,
            )
        ),
    ]


def daily_keys(models: Sequence[ModelDeclaration]) -> list[dg.AssetKey]:
    """What the daily schedule materializes."""
    return [*DAILY_FEATURE_KEYS, *(dg.AssetKey(m.feature_drift_key) for m in models)]


def weekly_keys(models: Sequence[ModelDeclaration]) -> list[dg.AssetKey]:
    """What the weekly retraining schedule materializes."""
    return [*SHARED_RETRAINING_KEYS, *(k for m in models for k in retraining_keys(m))]


def quality_keys(models: Sequence[ModelDeclaration]) -> list[dg.AssetKey]:
    """What the model-quality job materializes."""
    return [dg.AssetKey(k) for m in models for k in (m.model_quality_key, m.canary_verdict_key)]


def build_jobs(models: Sequence[ModelDeclaration]) -> list[dg.UnresolvedAssetJobDefinition]:
    retraining, daily = weekly_keys(models), daily_keys(models)
    return [
        dg.define_asset_job(
            names.MAIN_JOB,
            selection=dg.AssetSelection.all(),
            description="The whole lifecycle: land the source, ingest, features, training set, "
            "model, promotion, serving; every check.",
        ),
        dg.define_asset_job(
            names.DAILY_FEATURES_JOB,
            selection=dg.AssetSelection.assets(*daily),  # daily partitions
            description="One day: raw events, the daily feature partitions and the day's "
            "feature drift window.",
        ),
        dg.define_asset_job(
            names.RETRAINING_JOB,
            selection=dg.AssetSelection.assets(*retraining),
            description="For every declared model: labels, training set, training, "
            "registration, the promotion gate, the endpoint config and batch predictions; and "
            "the online store.",
        ),
        dg.define_asset_job(
            names.MODEL_QUALITY_JOB,
            selection=dg.AssetSelection.assets(*quality_keys(models)),
            description="For every declared model: quality on the outcomes that matured, from "
            "its batch predictions and inference log, and the verdict on a pending canary.",
        ),
        dg.define_asset_job(
            names.INFERENCE_LOG_JOB,
            selection=dg.AssetSelection.assets(*(m.inference_log_key for m in models)),
            description="Ingest the gateway's inference-log files into each endpoint's "
            "inference table.",
        ),
    ]


def build_schedules(
    jobs: list[dg.UnresolvedAssetJobDefinition], models: Sequence[ModelDeclaration]
) -> list[dg.ScheduleDefinition]:
    by_name = {job.name: job for job in jobs}
    act = {"config": {"act": True}}
    return [
        dg.build_schedule_from_partitioned_job(
            by_name[names.DAILY_FEATURES_JOB],
            name="daily_features_schedule",
            hour_of_day=1,
            description="01:00 UTC: yesterday's raw events, daily feature partitions and drift.",
        ),
        dg.ScheduleDefinition(
            name="weekly_retraining_schedule",
            job=by_name[names.RETRAINING_JOB],
            cron_schedule="0 3 * * 1",
            execution_timezone="UTC",
            description="Mondays 03:00 UTC: retrain and go through the promotion gate.",
        ),
        dg.ScheduleDefinition(
            name="model_quality_schedule",
            job=by_name[names.MODEL_QUALITY_JOB],
            cron_schedule="0 2 * * *",
            execution_timezone="UTC",
            description="02:00 UTC: every model's quality on the outcomes matured since.",
        ),
        dg.ScheduleDefinition(
            name="canary_autopilot_schedule",
            job=by_name[names.MODEL_QUALITY_JOB],
            cron_schedule="30 2 * * *",
            execution_timezone="UTC",
            run_config={"ops": {"__".join(m.canary_verdict_key): act for m in models}},
            description="Opt-in (off until turned on, as every schedule): 02:30 UTC, the "
            "canary verdicts with act: true: a verdict to promote moves the champion alias, "
            "one to roll back refuses the challenger, both through the audited path.",
        ),
        dg.ScheduleDefinition(
            name="inference_log_schedule",
            job=by_name[names.INFERENCE_LOG_JOB],
            cron_schedule="10 * * * *",
            execution_timezone="UTC",
            description="Every hour at :10 UTC: the answers the gateways logged since the last "
            "run, into the inference tables.",
        ),
    ]


def landed_partitions(
    landed: list[dt.date], cursor: str | None, late_days: int, partition_keys: set[str]
) -> tuple[list[tuple[dt.date, str, str]], str | None]:
    """For each day landed after the cursor: (day, first partition, last partition) of the
    run it needs (the day and the ``late_days`` before it, within the calendar); the new
    cursor is the newest landed day."""
    seen = None if cursor is None else dt.date.fromisoformat(cursor)
    requests = []
    for day in sorted(d for d in landed if seen is None or d > seen):
        window = [day - dt.timedelta(days=n) for n in range(late_days, -1, -1)]
        keys = [d.isoformat() for d in window if d.isoformat() in partition_keys]
        if keys:
            requests.append((day, keys[0], keys[-1]))
    newest = max(landed) if landed else seen
    return requests, None if newest is None else newest.isoformat()


def build_landed_events_sensor(partitions_def: dg.PartitionsDefinition) -> dg.SensorDefinition:
    keys = set(partitions_def.get_partition_keys())

    @dg.sensor(
        name="landed_events_sensor",
        asset_selection=dg.AssetSelection.assets(EVENTS_KEY),
        minimum_interval_seconds=60,
        description="A newly landed day of event files -> one raw/events run over that day and "
        "the late window before it.",
    )
    def landed_events_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
        listing = landing.listing(EVENTS_DIR)
        if listing.ignored:
            context.log.warning(
                "Ignored in the landing zone: %s", "; ".join(str(i) for i in listing.ignored[:20])
            )
        requests, cursor = landed_partitions(
            listing.dates, context.cursor, landing.late_arrival_days, keys
        )
        runs = [
            dg.RunRequest(
                run_key=f"landed-{day.isoformat()}",
                asset_selection=[EVENTS_KEY],
                tags={
                    "dagster/asset_partition_range_start": first,
                    "dagster/asset_partition_range_end": last,
                    "ml_assets/landed_day": day.isoformat(),
                },
            )
            for day, first, last in requests
        ]
        return dg.SensorResult(run_requests=runs, cursor=cursor)

    return landed_events_sensor


def build_endpoint_config_sensor(model: ModelDeclaration) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{model.stem}_endpoint_config_sensor",
        asset_selection=dg.AssetSelection.assets(dg.AssetKey(model.endpoint_config_key)),
        minimum_interval_seconds=30,
        description=f"{model.name}'s champion or challenger alias moved -> rewrite the "
        f"{model.endpoint} endpoint config.",
    )
    def _sensor(context: dg.SensorEvaluationContext, model_registry: ModelRegistry):
        registry = model_registry.open()
        name = registry.full_name(model.registered_model)
        champion = registry.by_alias(name, aliases.CHAMPION)
        challenger = registry.by_alias(name, aliases.CHALLENGER)
        state = (
            f"champion={None if champion is None else champion.version},"
            f"challenger={None if challenger is None else challenger.version}"
        )
        if state == context.cursor:
            return dg.SkipReason(f"aliases unchanged ({state})")
        if champion is None:
            return dg.SensorResult(skip_reason=f"{name} has no champion yet", cursor=state)
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=state, tags={"ml_assets/aliases": state})],
            cursor=state,
        )

    return _sensor


def latest_evaluation(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey
) -> dg.AssetCheckEvaluation | None:
    """The newest stored evaluation of a check (None if it never ran to a result)."""
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
    for record in records:  # newest first; a planned or skipped execution has no evaluation
        event = record.event.dagster_event if record.event else None
        data = event.event_specific_data if event else None
        if isinstance(data, dg.AssetCheckEvaluation):
            return data
    return None


def build_drift_retraining_sensor(model: ModelDeclaration) -> dg.SensorDefinition:
    check = dg.AssetCheckKey(dg.AssetKey(model.feature_drift_key), names.CHECK_FEATURE_DRIFT)
    selection = [*SHARED_RETRAINING_KEYS, *retraining_keys(model)]

    @dg.sensor(
        name=f"{model.stem}_drift_retraining_sensor",
        job_name=names.RETRAINING_JOB,
        minimum_interval_seconds=300,
        description=f"{model.name}'s feature_drift_within_limits failed with ERROR -> retrain "
        "it through the promotion gate, once per breach (a breach is named by its first "
        "window).",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        evaluation = latest_evaluation(context.instance, check)
        if evaluation is None:
            return dg.SkipReason(f"{check.name} has not been evaluated yet")
        level = evaluation.metadata.get("level")
        level = getattr(level, "value", level)
        if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            return dg.SkipReason(f"no drift breach (level {level}): {evaluation.description}")
        started = evaluation.metadata["breach_started"].value
        if started == context.cursor:
            return dg.SkipReason(
                f"the breach that started {started} has already triggered retraining"
            )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"drift-breach-{model.stem}-{started}",
                    asset_selection=selection,
                    tags={
                        "ml_assets/trigger": "drift",
                        "ml_assets/model": model.name,
                        "ml_assets/drift_breach_started": started,
                    },
                )
            ],
            cursor=started,
        )

    return _sensor


def build_quality_sensor(
    model: ModelDeclaration,
    retraining_job: dg.UnresolvedAssetJobDefinition,
    rollback_job: dg.JobDefinition,
) -> dg.SensorDefinition:
    check = dg.AssetCheckKey(dg.AssetKey(model.model_quality_key), names.CHECK_MODEL_QUALITY)
    selection = [*SHARED_RETRAINING_KEYS, *retraining_keys(model)]

    @dg.sensor(
        name=f"{model.stem}_model_quality_sensor",
        jobs=[retraining_job, rollback_job],
        minimum_interval_seconds=300,
        description=f"{model.name}'s model_quality_within_limits failed with ERROR -> roll the "
        "champion back (a rollout regression) or retrain (decay), once per breach (named by "
        "the champion version and the breach's first window).",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        evaluation = latest_evaluation(context.instance, check)
        if evaluation is None:
            return dg.SkipReason(f"{check.name} has not been evaluated yet")
        meta = {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}
        if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            return dg.SkipReason(
                f"no quality breach (level {meta.get('level')}): {evaluation.description}"
            )
        breach = f"{meta['action']}-v{meta['champion_version']}-{meta['breach_started']}"
        if breach == context.cursor:
            return dg.SkipReason(f"the breach {breach} has already been acted on")
        tags = {
            "ml_assets/trigger": "model_quality",
            "ml_assets/model": model.name,
            "ml_assets/quality_breach": breach,
        }
        reason = f"model_quality_within_limits: {evaluation.description}"[:500]
        if meta["action"] == "rollback":
            request = dg.RunRequest(
                run_key=f"quality-{model.stem}-{breach}",
                job_name=rollback_job.name,
                run_config={
                    "ops": {
                        "rollback_champion_alias": {
                            "config": {"model": model.name, "reason": reason}
                        }
                    }
                },
                tags=tags,
            )
        else:
            request = dg.RunRequest(
                run_key=f"quality-{model.stem}-{breach}",
                job_name=retraining_job.name,
                asset_selection=selection,
                tags=tags,
            )
        return dg.SensorResult(run_requests=[request], cursor=breach)

    return _sensor


automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    "automation_condition_sensor",
    target=dg.AssetSelection.all(),
    minimum_interval_seconds=60,
    description="Evaluates the assets' automation conditions (declarative automation).",
)
