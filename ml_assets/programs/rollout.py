"""A bad rollout, played through the real path, for ``make check --inject regression``.

After the main job made a good champion, the churn model is retrained with its engagement
features zeroed (a broken upstream join nobody noticed: ``ablated_features``) and promoted with
the gate in ``dry_run`` (a gate that only reports), so the worse version becomes the champion.
It then scores the scoring days, the model-quality job judges it on the outcomes that matured,
and the model's quality sensor is evaluated as the daemon would and its run request executed:
``model_quality_within_limits`` is expected to fail with ERROR, diagnose a regression, and the
sensor to roll the champion back through ``rollback_champion`` (the registry's audited path).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from ml_assets import names
from ml_assets.defs.automation import retraining_keys
from ml_assets.deployments import Settings, build_resources
from ml_assets.lib.models.catalog import model_named
from ml_assets.lib.registry import aliases

MODEL = "churn_classifier"
# the engagement signal: what a broken join of the activity table would leave at zero
ZEROED = (
    "days_since_last_login",
    "logins_7d",
    "logins_30d",
    "events_7d",
    "sessions_7d",
)


def _op(key: tuple[str, ...]) -> str:
    return "__".join(key)


@dataclass
class Rollout:
    results: list[dg.ExecuteInProcessResult] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)


def bad_rollout(settings: Settings, instance: dg.DagsterInstance) -> Rollout:
    from ml_assets.definitions import build_definitions  # the definitions import this module

    model = model_named(MODEL)
    defs = build_definitions(settings)
    registry = build_resources(settings)["model_registry"].open()
    name = registry.full_name(model.registered_model)
    before = registry.by_alias(name, aliases.CHAMPION)
    out = Rollout()
    tags = {"user": "make check", "ml_assets/launched_by": "make check --inject regression"}
    retrain = defs.resolve_job_def(names.RETRAINING_JOB).execute_in_process(
        instance=instance,
        asset_selection=retraining_keys(model),
        run_config={
            "ops": {
                _op(model.model_key): {"config": {"ablated_features": list(ZEROED)}},
                _op(model.champion_key): {"config": {"mode": "dry_run"}},
            }
        },
        tags=tags,
        raise_on_error=False,
    )
    out.results.append(retrain)
    bad = registry.by_alias(name, aliases.CHAMPION)
    out.lines.append(
        f"injected regression: {name} retrained with {', '.join(ZEROED)} zeroed and promoted "
        f"by a dry-run gate: champion v{before.version if before else '-'} -> "
        f"v{bad.version if bad else '-'}"
    )
    quality = defs.resolve_job_def(names.MODEL_QUALITY_JOB).execute_in_process(
        instance=instance, tags=tags, raise_on_error=False
    )
    out.results.append(quality)
    sensor = next(s for s in defs.sensors if s.name == f"{model.stem}_model_quality_sensor")
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        evaluated = sensor(context)
    requests = getattr(evaluated, "run_requests", None) or []
    if not requests:
        out.lines.append(f"{sensor.name}: no run requested ({evaluated})")
        return out
    for request in requests:
        ran = defs.resolve_job_def(request.job_name).execute_in_process(
            instance=instance,
            run_config=request.run_config,
            asset_selection=request.asset_selection,
            tags={**tags, **request.tags},
            raise_on_error=False,
        )
        out.results.append(ran)
        out.lines.append(
            f"{sensor.name} requested {request.job_name} ({request.run_key}): "
            f"{'SUCCESS' if ran.success else 'FAILURE'}"
        )
    after = registry.by_alias(name, aliases.CHAMPION)
    holder = f"v{after.version}" if after else "none"
    out.lines.append(f"after the sensor's run: {name} champion is {holder}")
    return out
