"""The alias flow on a registered model, through the ``Registry`` interface.

After mlops-stacks' ``deploy.py``: a new version gets ``challenger``; promotion moves
``champion`` to it and clears ``challenger``; the version it replaced keeps
``previous_champion`` so that a rollback knows where to go. Every move writes audit tags on
the versions involved (what, why, when, by which Dagster run).

The registry is passed in (the ``model_registry`` resource opens it), so this works unchanged
against the local SQLite store and against Unity Catalog (``databricks-uc``): aliases only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from ml_assets import names
from ml_assets.lib.registry.store import Registry, RegistryError

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
AUDIT_PREFIX = names.TAG_AUDIT_PREFIX


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def register_version(
    registry: Registry,
    name: str,
    model_id: str,
    run_id: str,
    *,
    description: str,
    tags: Mapping[str, str],
    model_description: str,
    model_tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """A new READY version of ``name`` from the logged model ``model_id``, holding the alias
    ``challenger``."""
    version = registry.register(
        name,
        model_id,
        run_id,
        description=description,
        tags=tags,
        model_description=model_description,
        model_tags=model_tags,
    )
    registry.set_alias(name, CHALLENGER, version.version)
    return registry.version(name, version.version)


@dataclass(frozen=True)
class AliasMove:
    model: str
    champion: str  # the version that holds champion now
    replaced: str | None  # the version that held it before


def promote(
    registry: Registry, name: str, version: str, *, reason: str, dagster_run_id: str
) -> AliasMove:
    """``champion`` -> ``version``; the version it replaces keeps ``previous_champion``;
    ``challenger`` is cleared when it points at the promoted version."""
    version = str(version)
    current = registry.by_alias(name, CHAMPION)
    replaced = str(current.version) if current is not None else None
    replaced = None if replaced == version else replaced
    when = now_utc()
    if replaced is not None:
        registry.set_alias(name, PREVIOUS_CHAMPION, replaced)
        _audit(registry, name, replaced, "demoted", f"replaced by v{version}", when, dagster_run_id)
    registry.set_alias(name, CHAMPION, version)
    challenger = registry.by_alias(name, CHALLENGER)
    if challenger is not None and str(challenger.version) == version:
        registry.delete_alias(name, CHALLENGER)
    _audit(registry, name, version, "promoted", reason, when, dagster_run_id)
    return AliasMove(name, version, replaced)


def rollback(registry: Registry, name: str, *, reason: str, dagster_run_id: str) -> AliasMove:
    """``champion`` -> the ``previous_champion`` version; ``previous_champion`` is cleared so
    a second rollback does not flip back."""
    previous = registry.by_alias(name, PREVIOUS_CHAMPION)
    if previous is None:
        current = registry.by_alias(name, CHAMPION)
        holder = f"v{current.version}" if current is not None else "no version"
        raise RegistryError(
            f"Nothing to roll back to: no version of {name} has the alias "
            f"{PREVIOUS_CHAMPION!r} (champion is {holder}). A promotion sets it on the version "
            "it replaces; a rollback clears it. To pick a version by hand, set the alias "
            f"{CHAMPION!r} on it in the MLflow UI or with MlflowClient.set_registered_model_alias."
        )
    restored = str(previous.version)
    current = registry.by_alias(name, CHAMPION)
    demoted = None if current is None else str(current.version)
    when = now_utc()
    registry.set_alias(name, CHAMPION, restored)
    registry.delete_alias(name, PREVIOUS_CHAMPION)
    if demoted is not None and demoted != restored:
        _audit(
            registry,
            name,
            demoted,
            "rolled_back",
            reason,
            when,
            dagster_run_id,
        )
    _audit(registry, name, restored, "restored", reason, when, dagster_run_id)
    return AliasMove(name, restored, demoted)


def _audit(
    registry: Registry,
    name: str,
    version: str,
    event: str,
    reason: str,
    when: str,
    dagster_run_id: str,
) -> None:
    """The latest event of each kind on the version: ``ml_assets.audit.<event>.{at,reason,
    dagster_run_id}`` (MLflow keeps one value per tag key)."""
    for key, value in (("at", when), ("reason", reason), ("dagster_run_id", dagster_run_id)):
        registry.set_tag(name, version, f"{AUDIT_PREFIX}.{event}.{key}", value)


def hold_for_canary(
    registry: Registry, name: str, version: str, *, reason: str, dagster_run_id: str
) -> None:
    """A challenger that passed the gate keeps ``challenger`` (the endpoint serves it a canary
    share) instead of becoming the champion; the canary verdict promotes or refuses it."""
    _audit(registry, name, str(version), "canary", reason, now_utc(), dagster_run_id)


def refuse(registry: Registry, name: str, version: str, *, reason: str, dagster_run_id: str):
    """A refused challenger loses the alias (it must not be served as a canary); the version
    and its audit tags stay for inspection."""
    challenger = registry.by_alias(name, CHALLENGER)
    if challenger is not None and str(challenger.version) == str(version):
        registry.delete_alias(name, CHALLENGER)
    _audit(registry, name, str(version), "refused", reason, now_utc(), dagster_run_id)


def record_gate(registry: Registry, name: str, version: str, tags: Mapping[str, str]) -> None:
    """The gate's outcome on the version it evaluated (``ml_assets.gate.*``)."""
    for key, value in tags.items():
        registry.set_tag(name, version, names.TAG_GATE_PREFIX + key, value)


REQUIRED_RUN_METRICS = ("test_roc_auc", "test_pr_auc", "test_log_loss", "test_brier")


def champion_problems(
    registry: Registry, name: str, required_metrics: tuple[str, ...] = REQUIRED_RUN_METRICS
) -> tuple[ModelVersion | None, list[str]]:
    """What is wrong with ``name@champion``: no champion, a version that is not READY, no
    run, a run that did not finish or was deleted, or metrics missing from the run."""
    champion = registry.by_alias(name, CHAMPION)
    if champion is None:
        return None, [
            f"No version of {name} has the alias {CHAMPION!r}: materialize "
            "registry/churn_classifier_champion to promote the challenger."
        ]
    problems = []
    if champion.status != "READY":
        problems.append(f"v{champion.version} is {champion.status}, not READY")
    if not champion.run_id:
        problems.append(f"v{champion.version} names no MLflow run")
        return champion, problems
    try:
        run = registry.run(champion)
    except MlflowException as exc:
        problems.append(f"v{champion.version}'s run {champion.run_id} cannot be read: {exc}")
        return champion, problems
    if run.info.lifecycle_stage != "active":
        problems.append(f"run {champion.run_id} is {run.info.lifecycle_stage}")
    if run.info.status != "FINISHED":
        problems.append(f"run {champion.run_id} is {run.info.status}, not FINISHED")
    missing = [m for m in required_metrics if m not in run.data.metrics]
    if missing:
        problems.append(f"run {champion.run_id} lacks the metrics {missing}")
    return champion, problems
