"""Rollouts played through the real path: the challengers ``make run`` serves (a canary and a
shadow), and a bad rollout for ``make check --inject regression``.

``stage_challengers``: after the main job, each model is retrained with a new seed (its tuning
sweep explores other trees) and passed through the gate with ``rollout: canary``: a
challenger the gate lets through keeps the ``challenger`` alias and the endpoint config serves
it, churn as a 10 % canary and purchase propensity as a shadow, so the replayed traffic gives
the canary verdict real rows on both kinds.

``bad_rollout``:
after the main job made a good champion, the churn model is retrained with its engagement
features zeroed (a broken upstream join nobody noticed: ``ablated_features``) and promoted with
the gate in ``dry_run`` (a gate that only reports), so the worse version becomes the champion.
It then scores the scoring days, the model-quality job judges it on the outcomes that matured,
and the model's quality sensor is evaluated as the daemon would and its run request executed:
``model_quality_within_limits`` is expected to fail with ERROR, diagnose a regression, and the
sensor to roll the champion back through ``rollback_champion`` (the registry's audited path).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

from ml_assets import names
from ml_assets.defs.automation import retraining_keys
from ml_assets.deployments import Settings, build_resources
from ml_assets.lib.models.catalog import model_named
from ml_assets.lib.registry import aliases
from ml_assets.programs.reporting import failed_steps, run_check_results

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


# how make run serves each model's challenger: endpoint config (a canary share, or a shadow)
STAGED = {"churn_classifier": {}, "purchase_propensity": {"shadow": True}}


@dataclass
class Staged:
    lines: list[str]
    result: dg.ExecuteInProcessResult
    refused: list[str]  # the models whose challenger the gate refused

    @property
    def ok(self) -> bool:
        """The run did what it should: it succeeded, or its only failures are the gate's
        refusals (a failed champion step and its ``promotion_gate_passed``), which are an
        outcome, not an error: that model's champion serves alone."""
        if self.result.success:
            return True
        gates = {_op(model_named(n).champion_key) for n in self.refused}
        failed = set(failed_steps(self.result))
        checks = [
            c
            for c in run_check_results(self.result)
            if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
        ]
        return (
            bool(failed)
            and failed <= gates
            and all(c.check_name == names.CHECK_GATE_PASSED for c in checks)
        )


def stage_challengers(
    settings: Settings,
    instance: dg.DagsterInstance,
    models: Mapping[str, Mapping[str, object]] = STAGED,
    gate: Mapping[str, object] | None = None,
) -> Staged:
    """One run of the retraining job over each model's line from training to the endpoint
    config (``models``: name -> endpoint config): a reseeded challenger per model, held as the
    canary or the shadow when the gate (its declared policy, or ``gate``'s settings) passes it;
    a refused one is reported, and its champion serves alone."""
    from ml_assets.definitions import build_definitions

    defs = build_definitions(settings)
    registry = build_resources(settings)["model_registry"].open()
    keys, ops = [], {}
    for name, endpoint_config in models.items():
        model = model_named(name)
        keys += [
            dg.AssetKey(k)
            for k in (model.model_key, model.version_key, model.champion_key)
            + (model.endpoint_config_key,)
        ]
        ops[_op(model.model_key)] = {"config": {"seed": model.settings.seed + 1}}
        ops[_op(model.champion_key)] = {"config": {**(gate or {}), "rollout": "canary"}}
        ops[_op(model.endpoint_config_key)] = {"config": endpoint_config}
    result = defs.resolve_job_def(names.RETRAINING_JOB).execute_in_process(
        instance=instance,
        asset_selection=keys,
        run_config={"ops": ops},
        tags={"user": "make run", "ml_assets/launched_by": "make run: canary and shadow"},
        raise_on_error=False,
    )
    lines, refused = [], []
    failed = failed_steps(result)
    for name, endpoint_config in models.items():
        model = model_named(name)
        full = registry.full_name(model.registered_model)
        champion = registry.by_alias(full, aliases.CHAMPION)
        challenger = registry.by_alias(full, aliases.CHALLENGER)
        if _op(model.champion_key) in failed:
            refused.append(name)
            lines.append(
                f"{full}: the gate refused the reseeded challenger, champion "
                f"v{champion.version if champion else '-'} serves alone: "
                f"{failed[_op(model.champion_key)][:300]}"
            )
            continue
        how = (
            "as a shadow (0 %)"
            if endpoint_config.get("shadow")
            else (f"as a {model.canary_percentage} % canary")
        )
        lines.append(
            f"{full}: challenger v{challenger.version} (seed {model.settings.seed + 1}) served "
            f"{how} beside champion v{champion.version if champion else '-'}"
            if challenger is not None
            else f"{full}: no challenger served (the run failed: see the Dagster UI)"
        )
    return Staged(lines, result, refused)


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
