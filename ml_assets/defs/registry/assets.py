"""The registry stage, for every declared model: a registered version per trained model, and
the gated champion (``build_registry(model)``).

``registry/<model>_version`` registers the parent run's model (the latest ``models/<model>``
materialization) as a new version with a model-card description and the run's lineage tags,
and gives it the alias ``challenger``.

``registry/<model>_champion`` is the promotion gate (``lib/registry/gate.py``): it scores the
challenger and the current champion on the challenger's test set, checks the signature, the
golden examples (the model's declared orderings) and latency, then moves the aliases according
to the mode. The standalone check ``champion_alias_consistent`` can be run any time from the
UI. One job, ``rollback_champion``, moves a model's champion back (config: the model).
"""

from typing import Literal

import dagster as dg
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from pydantic import Field
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.defs.metadata import check_result
from ml_assets.lib.models import classifier as cc
from ml_assets.lib.models.catalog import MODELS, model_named
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.models.encoding import request_frame
from ml_assets.lib.models.golden import golden_examples
from ml_assets.lib.models.thresholds import MetricThreshold
from ml_assets.lib.models.training import LOGGED_MODEL_TAG
from ml_assets.lib.registry import aliases
from ml_assets.lib.registry.card import model_description, model_tags, version_description
from ml_assets.lib.registry.completeness import version_completeness
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
from ml_assets.lib.training_sets.declaration import SPLIT
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.links import UiLinks
from ml_assets.resources.registry import ModelRegistry

SUMMARY_LIMIT = (
    4000  # characters of breach text kept in a version tag (the full report is an artifact)
)


def model_key(model: ModelDeclaration) -> dg.AssetKey:
    return dg.AssetKey(model.model_key)


def version_key(model: ModelDeclaration) -> dg.AssetKey:
    return dg.AssetKey(model.version_key)


def champion_key(model: ModelDeclaration) -> dg.AssetKey:
    return dg.AssetKey(model.champion_key)


def _latest_model_run_id(instance: dg.DagsterInstance, key: dg.AssetKey) -> str:
    event = instance.get_latest_materialization_event(key)
    entry = None if event is None else event.asset_materialization.metadata.get("mlflow_run_id")
    if entry is None:
        raise dg.Failure(
            f"No materialization of {key.to_user_string()} records an MLflow run: materialize "
            "it first (this asset registers the model of its latest run)."
        )
    return str(entry.value)


# declarative: register (and then gate) a new model only once its blocking checks passed

AFTER_BLOCKING_CHECKS = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager, upstream blocking checks passed")


def build_version(model: ModelDeclaration) -> dg.AssetsDefinition:
    trained = model_key(model)

    @dg.asset(
        key=version_key(model),
        group_name=names.REGISTRY,
        deps=[trained],
        automation_condition=AFTER_BLOCKING_CHECKS,
        kinds={"mlflow"},
        description=f"Registers the latest trained {model.name} as a new version of "
        f"{model.registered_model}, with a model-card description and lineage tags; sets the "
        "alias `challenger`.",
    )
    def _version(
        context: dg.AssetExecutionContext, model_registry: ModelRegistry, ui_links: UiLinks
    ) -> dg.MaterializeResult:
        run_id = _latest_model_run_id(context.instance, trained)
        registry = model_registry.open()
        name = registry.full_name(model.registered_model)
        dagster = ui_links.dagster()
        registered_by = {  # the training run's own Dagster links come with its lineage tags
            names.TAG_REGISTERED_BY_RUN: context.run.run_id,
            names.TAG_REGISTERED_BY_RUN_URL: dagster.run(context.run.run_id),
        }
        version = _register(registry, model, name, run_id, registered_by, trained)
        context.log.info("registered %s v%s (alias %s)", name, version.version, aliases.CHALLENGER)
        return dg.MaterializeResult(
            metadata={
                **_version_links(ui_links, registry, name, version.version, run_id),
                "registered_model": name,
                "version": dg.MetadataValue.text(str(version.version)),  # text: no chart
                "aliases": ", ".join(version.aliases),
                "model_uri": f"models:/{name}/{version.version}",
                "challenger_uri": f"models:/{name}@{aliases.CHALLENGER}",
                "mlflow_run_id": run_id,
                "test_roc_auc": round(
                    registry.run(run_id).data.metrics.get("test_roc_auc", float("nan")), 4
                ),
                "description": dg.MetadataValue.md(version.description or ""),
            }
        )

    return _version


def _version_links(
    ui_links: UiLinks, registry: Registry, name: str, version: str | int, run_id: str
) -> dict[str, object]:
    """Clickable MLflow UI links to the registered version and the run that trained it."""
    links = ui_links.mlflow()
    if links is None:
        return {}
    experiment_id = registry.run(run_id).info.experiment_id
    return {
        "registered_version": dg.MetadataValue.url(links.model_version(name, version)),
        "mlflow_run": dg.MetadataValue.url(links.run(experiment_id, run_id)),
    }


def _register(
    registry: Registry,
    model: ModelDeclaration,
    name: str,
    run_id: str,
    registered_by: dict[str, str],
    trained: dg.AssetKey,
) -> ModelVersion:
    run = registry.run(run_id)
    lineage = {k: v for k, v in run.data.tags.items() if k.startswith(names.TAG_PREFIX)}
    model_id = lineage.get(LOGGED_MODEL_TAG)
    if model_id is None:
        raise dg.Failure(
            f"MLflow run {run_id} has no tag {LOGGED_MODEL_TAG!r}: it was not made by "
            f"{trained.to_user_string()} (or predates it). Re-materialize it."
        )
    try:
        return aliases.register_version(
            registry,
            name,
            model_id,
            run_id,
            description=version_description(model, run_id, lineage, run.data.metrics),
            # the training run's lineage (with its Dagster links) and the run that registered it
            tags={**lineage, **registered_by},
            model_description=model_description(model),
            model_tags=model_tags(model),
        )
    except (RegistryError, RegistryRuleError) as exc:
        raise dg.Failure(f"{name}: the model of run {run_id} was not registered: {exc}") from exc


class MetricThresholdConfig(dg.Config):
    """One bound of the gate: ``threshold`` is absolute; ``max_regression`` is how much worse
    than the champion (on the same test set) the challenger may be."""

    metric: str = Field(description="a test metric of the run, e.g. roc_auc or log_loss")
    threshold: float | None = Field(
        None, description="absolute bound on the challenger's value; unset: none"
    )
    greater_is_better: bool = Field(
        True, description="true: the value must be at least the bound; false: at most"
    )
    max_regression: float | None = Field(
        None,
        description="how much worse than the champion's value on the same test set the "
        "challenger may be; unset: no comparison with the champion",
    )


def gate_config(model: ModelDeclaration) -> type[dg.Config]:
    """The gate's launchpad settings for one model, defaulting to its declared policy (by
    default its ROC AUC floor and the regression margins of ``default_policy``)."""
    declared = model.promotion_policy
    # as plain data: the launchpad shows a default only if it is JSON
    declared_thresholds = [
        {
            "metric": t.metric,
            "threshold": t.threshold,
            "greater_is_better": t.greater_is_better,
            "max_regression": t.max_regression,
        }
        for t in declared.thresholds
    ]

    class PromotionGateConfig(dg.Config):
        mode: Literal["disabled", "dry_run", "enabled"] = Field(
            "enabled",
            description="enabled: promote only if every gate check passes; dry_run: evaluate "
            "and record, then promote anyway; disabled: promote without evaluating "
            "(mlops-stacks).",
        )
        thresholds: list[MetricThresholdConfig] = Field(
            declared_thresholds,
            description=f"the bounds every challenger of {model.name} must meet (its declared "
            "policy: the ROC AUC floor of its training settings and the regression margins "
            "against the champion)",
            validate_default=True,
        )
        latency_budget_ms: float = Field(
            declared.latency_budget_ms,
            description="single-row p99 prediction budget (typical p99 is about 5 ms; the "
            "headroom keeps a busy machine from refusing a model)",
        )
        latency_calls: int = Field(
            declared.latency_calls, description="single-row predictions timed for the p99"
        )
        rollout: Literal["immediate", "canary"] = Field(
            "immediate",
            description="immediate: a challenger the gate lets through becomes the champion "
            "now; canary: it keeps the challenger alias and serves the endpoint's canary (or "
            "shadow) share until monitoring/<stem>_canary_verdict decides (the first version "
            "of a model, with no champion to compare with, is promoted either way)",
        )

        def policy(self) -> GatePolicy:
            return GatePolicy(
                thresholds=tuple(MetricThreshold(**t.model_dump()) for t in self.thresholds),
                latency_budget_ms=self.latency_budget_ms,
                latency_calls=self.latency_calls,
            )

    PromotionGateConfig.__name__ = f"{model.name}_promotion_gate_config"
    return PromotionGateConfig


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


def _test_set(
    lakehouse: Lakehouse, registry: Registry, model: ModelDeclaration, version: ModelVersion
):
    """The challenger's test split, read at the training set version its run recorded."""
    tags = registry.run(version).data.tags
    recorded = tags.get(names.TAG_TRAINING_SET_VERSION)
    if recorded is None:
        raise GateError(
            f"The run of v{version.version} does not record {names.TAG_TRAINING_SET_VERSION}: "
            "the gate cannot find the test set it was evaluated on."
        )
    frame = (
        lakehouse.read(model.training_set.table, version=int(recorded))
        .where(F.col(SPLIT) == "test")
        .select(*model.training_set.model_features, model.label)
        .toPandas()
    )
    labels = frame[model.label].to_numpy(dtype=int)
    return request_frame(frame, model.encoding), labels, int(recorded)


def _metrics_table(report: GateReport) -> str:
    rows = ["| metric | challenger | champion (same test set) |", "|---|---|---|"]
    for metric, value in report.candidate_metrics.items():
        base = None if report.baseline_metrics is None else report.baseline_metrics.get(metric)
        rows.append(f"| {metric} | {value:.4f} | {'-' if base is None else f'{base:.4f}'} |")
    return "\n".join(rows)


def _checks_table(report: GateReport) -> str:
    """One line per gate check with its values against their limits: a list, which wraps in
    the UI's metadata column where a wide table's detail column is cut off."""
    return "\n".join(
        f"- **{c['check']}**: {'passed' if c['passed'] else 'FAILED'}; {c['detail']}"
        for c in report.checks
    )


def _run_gate(
    lakehouse: Lakehouse,
    registry: Registry,
    model: ModelDeclaration,
    name: str,
    challenger: ModelVersion,
    champion: ModelVersion | None,
    policy: GatePolicy,
    run_id: str,
) -> tuple[GateReport, str, int]:
    """Both models scored on the challenger's test set; the report is also logged as a JSON
    artifact on the challenger's run. Returns the report, its URI and the test set version."""
    features, labels, test_set_version = _test_set(lakehouse, registry, model, challenger)

    def score(probabilities: np.ndarray, subject: GateSubject) -> dict[str, float]:
        threshold = subject.run_metrics.get("test_threshold")
        if threshold is None:
            raise GateError(
                f"The run of v{subject.version} logged no test_threshold (the decision "
                "threshold it was evaluated at)."
            )
        return cc.evaluate(labels, probabilities, threshold, model.costs)

    report = evaluate_gate(
        _subject(registry, name, challenger),
        None if champion is None else _subject(registry, name, champion),
        test_features=features,
        score=score,
        golden=golden_examples(model.encoding),
        orderings=model.golden_orderings,
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
    breaches = {"summary": summary} if summary else {}  # no empty tag when nothing breached
    return {
        **breaches,
        "mode": mode.value,
        "status": status,
        "breaches": "0" if report is None else str(len(report.breaches)),
        "baseline_version": "none" if champion is None else str(champion.version),
        "evaluated_at": aliases.now_utc(),
        "dagster_run_id": run_id,
        "report": report_uri or "none",
    }


def build_champion(model: ModelDeclaration) -> dg.AssetsDefinition:
    key = champion_key(model)
    Config = gate_config(model)

    @dg.asset(
        key=key,
        group_name=names.REGISTRY,
        deps=[version_key(model)],
        automation_condition=AFTER_BLOCKING_CHECKS,
        kinds={"mlflow"},
        check_specs=[
            dg.AssetCheckSpec(
                names.CHECK_GATE_PASSED,
                asset=key,
                description="The challenger passed every check of the promotion gate: metric "
                "thresholds and regression margins against the champion on the same test "
                "set, a signature the endpoint can serve, the golden examples' ordering and "
                "the single-row p99 latency budget. A failure means the champion alias did "
                "not move (in dry_run it moved anyway, and this records why it should not "
                "have).",
            )
        ],
        description="The promotion gate: evaluates `challenger` against `champion` on the same "
        "test set (metric thresholds, signature, golden examples, latency) and moves the "
        "aliases (`champion`, `previous_champion`) per the mode: disabled | dry_run | enabled.",
    )
    def _champion(
        context: dg.AssetExecutionContext,
        config: Config,
        lakehouse: Lakehouse,
        model_registry: ModelRegistry,
        ui_links: UiLinks,
    ):
        registry = model_registry.open()
        name = registry.full_name(model.registered_model)
        mode, policy = GateMode(config.mode), config.policy()  # a bad policy fails here
        challenger = _challenger(registry, name, model)
        champion = registry.by_alias(name, aliases.CHAMPION)
        run_id = context.run.run_id
        report, report_uri, test_set_version = None, None, None
        if mode is not GateMode.DISABLED:
            report, report_uri, test_set_version = _run_gate(
                lakehouse, registry, model, name, challenger, champion, policy, run_id
            )
        decision = decide(mode, report)
        tags = _gate_tags(mode, report, champion, run_id, report_uri)
        aliases.record_gate(registry, name, challenger.version, tags)
        detail = _gate_detail(report, report_uri, test_set_version)
        detail |= _gate_links(ui_links, registry, challenger, report_uri)
        gate_check = _gate_check(mode, report, decision.reason, challenger)
        if not decision.promote:
            aliases.refuse(
                registry, name, challenger.version, reason=decision.reason, dagster_run_id=run_id
            )
            # the failed check is recorded (the UI and make check show it), then the line stops
            yield gate_check
            raise dg.Failure(
                description=report.failure_message(name),
                metadata={"challenger_version": int(challenger.version), "mode": mode.value}
                | detail,
            )
        if config.rollout == "canary" and champion is not None:
            aliases.hold_for_canary(
                registry, name, challenger.version, reason=decision.reason, dagster_run_id=run_id
            )
            context.log.info(
                "%s: v%s passed (%s) and serves as the canary; champion stays v%s",
                name,
                challenger.version,
                decision.reason,
                champion.version,
            )
            yield dg.MaterializeResult(
                metadata=_held(name, champion, challenger, mode, decision, detail)
            )
            yield gate_check
            return
        move = aliases.promote(
            registry, name, challenger.version, reason=decision.reason, dagster_run_id=run_id
        )
        context.log.info("%s: champion is v%s (%s)", name, move.champion, decision.reason)
        yield dg.MaterializeResult(metadata=_promoted(name, move, mode, decision, report, detail))
        yield gate_check

    return _champion


def _challenger(registry: Registry, name: str, model: ModelDeclaration) -> ModelVersion:
    challenger = registry.by_alias(name, aliases.CHALLENGER)
    if challenger is None:
        raise dg.Failure(
            f"No version of {name} has the alias {aliases.CHALLENGER!r}: nothing to evaluate. "
            f"Materialize {version_key(model).to_user_string()} first (it registers the latest "
            "model and makes it the challenger)."
        )
    return challenger


def _gate_detail(report: GateReport | None, report_uri, test_set_version) -> dict[str, object]:
    if report is None:
        return {}
    return {
        "gate_checks": dg.MetadataValue.md(_checks_table(report)),
        "metrics": dg.MetadataValue.md(_metrics_table(report)),
        "latency_p50_ms": round(report.latency_ms["p50"], 2),
        "latency_p99_ms": round(report.latency_ms["p99"], 2),
        "gate_report": report_uri,
        "test_set_version": test_set_version,
    }


def _gate_links(
    ui_links: UiLinks, registry: Registry, challenger: ModelVersion, report_uri: str | None
) -> dict[str, object]:
    """The evaluated version and its gate report (an artifact of its run) in the MLflow UI."""
    links = ui_links.mlflow()
    if links is None:
        return {}
    found: dict[str, object] = {
        "challenger_version_url": dg.MetadataValue.url(
            links.model_version(challenger.name, challenger.version)
        )
    }
    if report_uri is not None:
        run_id, _, path = report_uri.removeprefix("runs:/").partition("/")
        experiment_id = registry.run(run_id).info.experiment_id
        found["gate_report_url"] = dg.MetadataValue.url(links.artifact(experiment_id, run_id, path))
    return found


def _held(name, champion, challenger, mode: GateMode, decision, detail) -> dict[str, object]:
    """A challenger that passed and serves as the canary; the champion stays."""
    return {
        "registered_model": name,
        "champion_version": dg.MetadataValue.text(str(champion.version)),
        "challenger_version": dg.MetadataValue.text(str(challenger.version)),
        "mode": mode.value,
        "rollout": "canary",
        "decision": f"{decision.reason}; held as the canary until its verdict",
        **detail,
    }


def _promoted(name, move, mode: GateMode, decision, report, detail) -> dict[str, object]:
    champion_metrics = (
        {f"champion_test_{k}": round(v, 4) for k, v in report.candidate_metrics.items()}
        if report is not None
        else {}
    )
    return {
        "registered_model": name,
        # versions as text: numbers the UI would plot as one-point charts
        "champion_version": dg.MetadataValue.text(str(move.champion)),
        "previous_champion_version": dg.MetadataValue.text(move.replaced or "none"),
        "champion_uri": f"models:/{name}@{aliases.CHAMPION}",
        "mode": mode.value,
        "decision": decision.reason,
        **champion_metrics,
        **detail,
    }


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


def build_champion_consistent(model: ModelDeclaration) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=champion_key(model),
        name=names.CHECK_CHAMPION_CONSISTENT,
        blocking=True,
        description="`champion` points at an existing READY version whose MLflow run finished "
        "and holds the test metrics.",
    )
    def _consistent(model_registry: ModelRegistry) -> dg.AssetCheckResult:
        registry = model_registry.open()
        name = registry.full_name(model.registered_model)
        champion, problems = aliases.champion_problems(registry, name)
        return dg.AssetCheckResult(
            passed=not problems,
            description="; ".join(problems)
            or f"{name}@champion is v{champion.version}: READY; run {champion.run_id} has the "
            "metrics",
            metadata={
                "registered_model": name,
                "champion_version": "none" if champion is None else str(champion.version),
                "problems": len(problems),
            },
        )

    return _consistent


def build_version_complete(model: ModelDeclaration) -> dg.AssetChecksDefinition:
    key = version_key(model)

    @dg.asset_check(
        asset=key,
        name=names.CHECK_VERSION_COMPLETE,
        blocking=True,
        description="The version the latest materialization registered has a signature (its "
        "inputs, and the model's declared output), an input example, and every lineage tag: "
        "model, training set with its version and content hash, each feature table's Delta "
        "version, each split's window, git commit, the Dagster runs that trained and "
        "registered it, the logged model. A failure means the version cannot be served "
        "safely or traced back to its data and code: it is not gated or promoted.",
    )
    def _complete(
        context: dg.AssetCheckExecutionContext, model_registry: ModelRegistry
    ) -> dg.AssetCheckResult:
        event = context.instance.get_latest_materialization_event(key)
        if event is None or "version" not in event.asset_materialization.metadata:
            return dg.AssetCheckResult(
                passed=False,
                description=f"Nothing registered yet: materialize {key.to_user_string()}.",
            )
        version = str(event.asset_materialization.metadata["version"].value)
        registry = model_registry.open()
        name = registry.full_name(model.registered_model)
        tags = registry.version(name, version).tags
        info = registry.model_info(name, version)
        return check_result(version_completeness(model, version, tags, info))

    return _complete


def build_registry(
    model: ModelDeclaration,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """The registered version (with its completeness check) and the gated champion of one
    model, and the alias check."""
    checks = [build_version_complete(model), build_champion_consistent(model)]
    return [build_version(model), build_champion(model)], checks


class RollbackConfig(dg.Config):
    model: str = Field(
        next(iter(MODELS)),
        description=f"The declared model whose champion moves back: one of {sorted(MODELS)}.",
    )
    reason: str = Field("manual rollback", description="Why; written to the audit tags.")


@dg.op(description="Moves `champion` back to the `previous_champion` version.")
def rollback_champion_alias(
    context: dg.OpExecutionContext, config: RollbackConfig, model_registry: ModelRegistry
) -> None:
    try:
        model = model_named(config.model)
    except KeyError as exc:
        raise dg.Failure(str(exc.args[0])) from None
    registry = model_registry.open()
    name = registry.full_name(model.registered_model)
    try:
        move = aliases.rollback(
            registry, name, reason=config.reason, dagster_run_id=context.run.run_id
        )
    except RegistryError as exc:
        raise dg.Failure(str(exc)) from exc
    context.log.info("%s: champion rolled back from v%s to v%s", name, move.replaced, move.champion)
    context.log_event(
        dg.AssetMaterialization(
            asset_key=champion_key(model),
            description=f"Rolled back: {config.reason}",
            metadata={
                "registered_model": name,
                "champion_version": dg.MetadataValue.text(str(move.champion)),
                "rolled_back_version": dg.MetadataValue.text(move.replaced or "none"),
                "champion_uri": f"models:/{name}@{aliases.CHAMPION}",
                "decision": f"rollback: {config.reason}",
            },
        )
    )


@dg.job(
    name=names.ROLLBACK_JOB,
    description="Moves a model's `champion` alias back to `previous_champion` (config: the "
    "model and the reason), with audit tags; fails with a clear message when there is nothing "
    "to roll back to.",
)
def rollback_champion():
    rollback_champion_alias()
