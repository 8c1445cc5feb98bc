"""The registry stage: a registered version per trained model, and the gated champion.

``registry/churn_classifier_version`` registers the parent run's model (the latest
``models/churn_classifier`` materialization) as a new version with a model-card description
and the run's lineage tags, and gives it the alias ``challenger``.

``registry/churn_classifier_champion`` is the promotion gate (``lib/registry/gate.py``): it
scores the challenger and the current champion on the challenger's test set, checks the
signature, golden examples and latency, then moves the aliases according to the mode. The
standalone check ``champion_alias_consistent`` can be run any time from the UI.
"""

from typing import Literal

import dagster as dg
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from pydantic import Field
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.lib.models import classifier as cc
from ml_assets.lib.models.churn_classifier import COSTS, ENCODING, REGISTERED_MODEL
from ml_assets.lib.models.encoding import request_frame
from ml_assets.lib.models.golden import ORDERINGS, golden_examples
from ml_assets.lib.models.thresholds import MetricThreshold
from ml_assets.lib.models.training import LOGGED_MODEL_TAG
from ml_assets.lib.registry import aliases
from ml_assets.lib.registry.card import MODEL_DESCRIPTION, version_description
from ml_assets.lib.registry.gate import (
    GateError,
    GateMode,
    GatePolicy,
    GateReport,
    GateSubject,
    decide,
    evaluate_gate,
)
from ml_assets.lib.registry.store import Registry, RegistryError, RegistryRuleError
from ml_assets.lib.training_sets.churn import LABEL, MODEL_FEATURES, SPLIT, TRAINING_SET
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.registry import ModelRegistry

MODEL_KEY = dg.AssetKey(names.CHURN_CLASSIFIER_KEY)
VERSION_KEY = dg.AssetKey(names.CHURN_CLASSIFIER_VERSION_KEY)
CHAMPION_KEY = dg.AssetKey(names.CHURN_CLASSIFIER_CHAMPION_KEY)
SUMMARY_LIMIT = (
    4000  # characters of breach text kept in a version tag (the full report is an artifact)
)


def _latest_model_run_id(instance: dg.DagsterInstance) -> str:
    event = instance.get_latest_materialization_event(MODEL_KEY)
    entry = None if event is None else event.asset_materialization.metadata.get("mlflow_run_id")
    if entry is None:
        raise dg.Failure(
            "No materialization of models/churn_classifier records an MLflow run: materialize "
            "it first (this asset registers the model of its latest run)."
        )
    return str(entry.value)


# declarative: register (and then gate) a new model only once its blocking checks passed
AFTER_BLOCKING_CHECKS = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager, upstream blocking checks passed")


@dg.asset(
    key=VERSION_KEY,
    group_name=names.REGISTRY,
    deps=[MODEL_KEY],
    automation_condition=AFTER_BLOCKING_CHECKS,
    kinds={"mlflow"},
    description="Registers the latest trained churn model as a new version of the registered "
    "model, with a model-card description and lineage tags; sets the alias `challenger`.",
)
def churn_classifier_version(
    context: dg.AssetExecutionContext, model_registry: ModelRegistry
) -> dg.MaterializeResult:
    run_id = _latest_model_run_id(context.instance)
    registry = model_registry.open()
    name = registry.full_name(REGISTERED_MODEL)
    run = registry.run(run_id)
    lineage = {k: v for k, v in run.data.tags.items() if k.startswith(names.TAG_PREFIX)}
    model_id = lineage.get(LOGGED_MODEL_TAG)
    if model_id is None:
        raise dg.Failure(
            f"MLflow run {run_id} has no tag {LOGGED_MODEL_TAG!r}: it was not made by "
            "models/churn_classifier (or predates it). Re-materialize models/churn_classifier."
        )
    try:
        version = aliases.register_version(
            registry,
            name,
            model_id,
            run_id,
            description=version_description(run_id, lineage, run.data.metrics),
            tags={**lineage, names.TAG_REGISTERED_BY_RUN: context.run.run_id},
            model_description=MODEL_DESCRIPTION,
        )
    except (RegistryError, RegistryRuleError) as exc:
        raise dg.Failure(f"{name}: the model of run {run_id} was not registered: {exc}") from exc
    context.log.info("registered %s v%s (alias %s)", name, version.version, aliases.CHALLENGER)
    return dg.MaterializeResult(
        metadata={
            "registered_model": name,
            "version": int(version.version),
            "aliases": ", ".join(version.aliases),
            "model_uri": f"models:/{name}/{version.version}",
            "challenger_uri": f"models:/{name}@{aliases.CHALLENGER}",
            "mlflow_run_id": run_id,
            "test_roc_auc": round(run.data.metrics.get("test_roc_auc", float("nan")), 4),
            "description": dg.MetadataValue.md(version.description or ""),
        }
    )


class MetricThresholdConfig(dg.Config):
    """One bound of the gate: ``threshold`` is absolute; ``max_regression`` is how much worse
    than the champion (on the same test set) the challenger may be."""

    metric: str
    threshold: float | None = None
    greater_is_better: bool = True
    max_regression: float | None = None


def _default_thresholds() -> list[MetricThresholdConfig]:
    return [
        MetricThresholdConfig(metric="roc_auc", threshold=0.75, max_regression=0.01),
        MetricThresholdConfig(metric="pr_auc", max_regression=0.02),
        MetricThresholdConfig(metric="log_loss", greater_is_better=False, max_regression=0.01),
        MetricThresholdConfig(metric="brier", greater_is_better=False, max_regression=0.005),
    ]


class PromotionGateConfig(dg.Config):
    mode: Literal["disabled", "dry_run", "enabled"] = Field(
        "enabled",
        description="enabled: promote only if every gate check passes; dry_run: evaluate and "
        "record, then promote anyway; disabled: promote without evaluating (mlops-stacks).",
    )
    thresholds: list[MetricThresholdConfig] = Field(default_factory=_default_thresholds)
    latency_budget_ms: float = Field(
        50.0,
        description="single-row p99 prediction budget (typical p99 is about 5 ms; the headroom "
        "keeps a busy machine from refusing a model)",
    )
    latency_calls: int = Field(200, description="single-row predictions timed for the p99")

    def policy(self) -> GatePolicy:
        return GatePolicy(
            thresholds=tuple(MetricThreshold(**t.model_dump()) for t in self.thresholds),
            latency_budget_ms=self.latency_budget_ms,
            latency_calls=self.latency_calls,
        )


def _subject(registry: Registry, name: str, version: ModelVersion) -> GateSubject:
    if not version.run_id:
        raise GateError(f"{name} v{version.version} names no MLflow run; its metrics are unknown.")
    model = registry.load(name, version.version)
    outputs = model.metadata.get_output_schema()
    return GateSubject(
        version=version.version,
        predict=lambda frame: np.asarray(model.predict(frame), dtype="float64"),
        input_schema=model.metadata.get_input_schema().to_dict(),
        output_schema=None if outputs is None else outputs.to_dict(),
        run_metrics=registry.run(version).data.metrics,
    )


def _test_set(lakehouse: Lakehouse, registry: Registry, version: ModelVersion):
    """The challenger's test split, read at the training set version its run recorded."""
    tags = registry.run(version).data.tags
    recorded = tags.get(names.TAG_TRAINING_SET_VERSION)
    if recorded is None:
        raise GateError(
            f"The run of v{version.version} does not record {names.TAG_TRAINING_SET_VERSION}: "
            "the gate cannot find the test set it was evaluated on."
        )
    frame = (
        lakehouse.read(TRAINING_SET, version=int(recorded))
        .where(F.col(SPLIT) == "test")
        .select(*MODEL_FEATURES, LABEL)
        .toPandas()
    )
    return request_frame(frame, ENCODING), frame[LABEL].to_numpy(dtype=int), int(recorded)


def _metrics_table(report: GateReport) -> str:
    rows = ["| metric | challenger | champion (same test set) |", "|---|---|---|"]
    for metric, value in report.candidate_metrics.items():
        base = None if report.baseline_metrics is None else report.baseline_metrics.get(metric)
        rows.append(f"| {metric} | {value:.4f} | {'-' if base is None else f'{base:.4f}'} |")
    return "\n".join(rows)


def _checks_table(report: GateReport) -> str:
    rows = ["| gate check | passed | detail |", "|---|---|---|"]
    rows += [
        f"| {c['check']} | {'yes' if c['passed'] else 'NO'} | {c['detail']} |"
        for c in report.checks
    ]
    return "\n".join(rows)


def _run_gate(
    lakehouse: Lakehouse,
    registry: Registry,
    name: str,
    challenger: ModelVersion,
    champion: ModelVersion | None,
    policy: GatePolicy,
    run_id: str,
) -> tuple[GateReport, str, int]:
    """Both models scored on the challenger's test set; the report is also logged as a JSON
    artifact on the challenger's run. Returns the report, its URI and the test set version."""
    features, labels, test_set_version = _test_set(lakehouse, registry, challenger)

    def score(probabilities: np.ndarray, subject: GateSubject) -> dict[str, float]:
        threshold = subject.run_metrics.get("test_threshold")
        if threshold is None:
            raise GateError(
                f"The run of v{subject.version} logged no test_threshold (the decision "
                "threshold it was evaluated at)."
            )
        return cc.evaluate(labels, probabilities, threshold, COSTS)

    report = evaluate_gate(
        _subject(registry, name, challenger),
        None if champion is None else _subject(registry, name, champion),
        test_features=features,
        score=score,
        golden=golden_examples(),
        orderings=ORDERINGS,
        policy=policy,
    )
    uri = registry.log_text(challenger, report.to_json(), f"promotion_gate/{run_id}.json")
    return report, uri, test_set_version


def _gate_tags(
    mode: GateMode,
    report: GateReport | None,
    champion: ModelVersion | None,
    run_id: str,
    report_uri: str | None,
) -> dict[str, str]:
    """``ml_assets.gate.*`` on the evaluated version; the breach text is cut at
    ``SUMMARY_LIMIT`` characters (the report artifact has all of it)."""
    summary = "" if report is None else "; ".join(map(str, report.breaches))
    if len(summary) > SUMMARY_LIMIT:
        summary = summary[:SUMMARY_LIMIT] + " ... (see the report)"
    status = "not_evaluated" if report is None else ("passed" if report.passed else "failed")
    return {
        "mode": mode.value,
        "status": status,
        "breaches": "0" if report is None else str(len(report.breaches)),
        "baseline_version": "none" if champion is None else str(champion.version),
        "evaluated_at": aliases.now_utc(),
        "dagster_run_id": run_id,
        "report": report_uri or "none",
        "summary": summary,
    }


@dg.asset(
    key=CHAMPION_KEY,
    group_name=names.REGISTRY,
    deps=[VERSION_KEY],
    automation_condition=AFTER_BLOCKING_CHECKS,
    kinds={"mlflow"},
    check_specs=[dg.AssetCheckSpec(names.CHECK_GATE_PASSED, asset=CHAMPION_KEY)],
    description="The promotion gate: evaluates `challenger` against `champion` on the same "
    "test set (metric thresholds, signature, golden examples, latency) and moves the aliases "
    "(`champion`, `previous_champion`) per the mode: disabled | dry_run | enabled.",
)
def churn_classifier_champion(
    context: dg.AssetExecutionContext,
    config: PromotionGateConfig,
    lakehouse: Lakehouse,
    model_registry: ModelRegistry,
):
    registry = model_registry.open()
    name = registry.full_name(REGISTERED_MODEL)
    mode = GateMode(config.mode)
    policy = config.policy()  # a malformed policy fails here, before anything moves
    challenger = registry.by_alias(name, aliases.CHALLENGER)
    if challenger is None:
        raise dg.Failure(
            f"No version of {name} has the alias {aliases.CHALLENGER!r}: nothing to evaluate. "
            "Materialize registry/churn_classifier_version first (it registers the latest "
            "model and makes it the challenger)."
        )
    champion = registry.by_alias(name, aliases.CHAMPION)
    run_id = context.run.run_id
    report, report_uri, test_set_version = None, None, None
    if mode is not GateMode.DISABLED:
        report, report_uri, test_set_version = _run_gate(
            lakehouse, registry, name, challenger, champion, policy, run_id
        )
    decision = decide(mode, report)
    aliases.record_gate(
        registry, name, challenger.version, _gate_tags(mode, report, champion, run_id, report_uri)
    )
    detail = (
        {}
        if report is None
        else {
            "gate_checks": dg.MetadataValue.md(_checks_table(report)),
            "metrics": dg.MetadataValue.md(_metrics_table(report)),
            "latency_p50_ms": round(report.latency_ms["p50"], 2),
            "latency_p99_ms": round(report.latency_ms["p99"], 2),
            "gate_report": report_uri,
            "test_set_version": test_set_version,
        }
    )
    gate_check = _gate_check(mode, report, decision.reason, challenger)
    if not decision.promote:
        aliases.refuse(
            registry, name, challenger.version, reason=decision.reason, dagster_run_id=run_id
        )
        # the failed check is recorded (the UI and make check show it), then the line stops
        yield gate_check
        raise dg.Failure(
            description=report.failure_message(name),
            metadata={"challenger_version": int(challenger.version), "mode": mode.value, **detail},
        )
    move = aliases.promote(
        registry, name, challenger.version, reason=decision.reason, dagster_run_id=run_id
    )
    context.log.info("%s: champion is v%s (%s)", name, move.champion, decision.reason)
    champion_metrics = (
        {f"champion_test_{k}": round(v, 4) for k, v in report.candidate_metrics.items()}
        if report is not None
        else {}
    )
    yield dg.MaterializeResult(
        metadata={
            "registered_model": name,
            "champion_version": int(move.champion),
            "previous_champion_version": int(move.replaced) if move.replaced else None,
            "champion_uri": f"models:/{name}@{aliases.CHAMPION}",
            "mode": mode.value,
            "decision": decision.reason,
            **champion_metrics,
            **detail,
        }
    )
    yield gate_check


def _gate_check(
    mode: GateMode, report: GateReport | None, reason: str, challenger: ModelVersion
) -> dg.AssetCheckResult:
    """``promotion_gate_passed``: ERROR when the gate decides (enabled), WARN otherwise."""
    return dg.AssetCheckResult(
        check_name=names.CHECK_GATE_PASSED,
        passed=report is not None and report.passed,
        severity=dg.AssetCheckSeverity.ERROR
        if mode is GateMode.ENABLED
        else dg.AssetCheckSeverity.WARN,
        description=reason
        if report is None or report.passed
        else f"{reason}: " + "; ".join(map(str, report.breaches)),
        metadata={
            "mode": mode.value,
            "challenger_version": int(challenger.version),
            "breaches": 0 if report is None else len(report.breaches),
        },
    )


@dg.asset_check(
    asset=CHAMPION_KEY,
    name=names.CHECK_CHAMPION_CONSISTENT,
    blocking=True,
    description="`champion` points at an existing READY version whose MLflow run finished and "
    "holds the test metrics.",
)
def champion_alias_consistent(model_registry: ModelRegistry) -> dg.AssetCheckResult:
    registry = model_registry.open()
    name = registry.full_name(REGISTERED_MODEL)
    champion, problems = aliases.champion_problems(registry, name)
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(problems)
        or f"{name}@champion is v{champion.version}: READY; run {champion.run_id} has the metrics",
        metadata={
            "registered_model": name,
            "champion_version": None if champion is None else int(champion.version),
            "problems": len(problems),
        },
    )


class RollbackConfig(dg.Config):
    reason: str = Field("manual rollback", description="Why; written to the audit tags.")


@dg.op(description="Moves `champion` back to the `previous_champion` version.")
def rollback_champion_alias(
    context: dg.OpExecutionContext, config: RollbackConfig, model_registry: ModelRegistry
) -> None:
    registry = model_registry.open()
    name = registry.full_name(REGISTERED_MODEL)
    try:
        move = aliases.rollback(
            registry, name, reason=config.reason, dagster_run_id=context.run.run_id
        )
    except RegistryError as exc:
        raise dg.Failure(str(exc)) from exc
    context.log.info("%s: champion rolled back from v%s to v%s", name, move.replaced, move.champion)
    context.log_event(
        dg.AssetMaterialization(
            asset_key=CHAMPION_KEY,
            description=f"Rolled back: {config.reason}",
            metadata={
                "registered_model": name,
                "champion_version": int(move.champion),
                "rolled_back_version": int(move.replaced) if move.replaced else None,
                "champion_uri": f"models:/{name}@{aliases.CHAMPION}",
                "decision": f"rollback: {config.reason}",
            },
        )
    )


@dg.job(
    name=names.ROLLBACK_JOB,
    description="Moves the churn model's `champion` alias back to `previous_champion`, with "
    "audit tags; fails with a clear message when there is nothing to roll back to.",
)
def rollback_champion():
    rollback_champion_alias()
