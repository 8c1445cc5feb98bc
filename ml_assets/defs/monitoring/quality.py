"""Model quality on delayed labels for every declared model (``build_quality_monitoring(model)``):
``monitoring/<stem>_model_quality`` joins the predictions made (batch predictions and the
inference log) with the outcomes realised once their window passed, into
``main.monitoring.<model>_model_quality`` (lib/monitoring/model_quality); its check
``model_quality_within_limits`` judges the champion with the model's ``quality_limits``
(lib/monitoring/quality_limits: debounced as drift, a regression told apart from decay).

``monitoring/<stem>_canary_verdict`` judges a pending challenger (served a canary share, or
as a shadow) on the realised outcomes of the traffic each version answered, from the inference
log (lib/monitoring/canary): promote, wait or roll back, with the evidence. Acting on it is
opt-in (``act``), and the aliases move only through lib/registry/aliases (audited).
"""

import time

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from ml_assets import names
from ml_assets.defs.metadata import table_asset_spec
from ml_assets.defs.monitoring.assets import merge_rows
from ml_assets.lib.features import user_daily_activity
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.monitoring import model_quality as mq
from ml_assets.lib.monitoring.canary import Arm, CanaryLimits, verdict
from ml_assets.lib.monitoring.plots import markdown_image, quality_chart, reliability_chart
from ml_assets.lib.registry import aliases
from ml_assets.lib.serving.inference_log import inference_log_table
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.registry import ModelRegistry
from ml_assets.resources.spark import SparkResource

DAILY_KEY = dg.AssetKey(names.USER_DAILY_ACTIVITY_KEY)


def _inference_log(model: ModelDeclaration):
    return inference_log_table(model.inference_log_table, model.endpoint)


def build_model_quality(model: ModelDeclaration) -> dg.AssetsDefinition:
    key, table = dg.AssetKey(model.model_quality_key), mq.model_quality_table(model)
    deps = [
        dg.AssetKey(model.predictions_key),
        dg.AssetKey(model.inference_log_key),
        DAILY_KEY,
        dg.AssetKey(model.champion_key),
    ]

    @dg.multi_asset(
        specs=[table_asset_spec(key, table, group=names.MONITORING, deps=deps)],
        name=key.path[-1],
    )
    def _model_quality(
        context: dg.AssetExecutionContext,
        lakehouse: Lakehouse,
        spark: SparkResource,
        model_registry: ModelRegistry,
    ) -> dg.MaterializeResult:
        """Every prediction whose outcome window has passed, joined with the outcome it
        realised, profiled per scoring day, source and model version; the champion's rows
        also carry the previous champion's quality on the same rows (re-scored)."""
        started = time.perf_counter()
        try:
            found = mq.profile_new_outcomes(lakehouse, model_registry.open(), model)
        except mq.QualityInputError as exc:
            raise dg.Failure(str(exc)) from None
        rows, metrics, through = found.rows, found.metrics, found.outcomes_through
        metadata: dict[str, object] = {
            "predictions_profiled_now": len(rows),
            "predictions_pending_outcome": found.pending,
            "outcomes_through": through.isoformat(),
            "champion_version": dg.MetadataValue.text(str(found.champion)),
            "previous_champion_version": dg.MetadataValue.text(str(found.previous or "none")),
        }
        if metrics:
            metadata |= merge_rows(lakehouse, spark, table, metrics)
        history = quality_history(lakehouse, model)
        if history is not None and len(history):
            metadata["predictions_profiled"] = int(history["rows"].sum())
            metadata |= _quality_metadata(
                model, history, found.champion, found.previous, found.champion_test_auc
            )
        else:
            metadata["note"] = (
                f"No prediction's outcome window has passed yet (outcomes through {through}): "
                "nothing to profile. Rows mature once their outcome window ends."
            )
        context.log.info(
            "model quality: %d matured predictions (%d pending), %d metric rows, outcomes "
            "through %s",
            len(rows),
            found.pending,
            len(metrics),
            through,
        )
        metadata["seconds"] = round(time.perf_counter() - started, 1)
        return dg.MaterializeResult(metadata=metadata)

    return _model_quality


def _quality_metadata(
    model: ModelDeclaration,
    history: pd.DataFrame,
    champion: int | None,
    previous: int | None,
    test_auc: float | None,
) -> dict[str, object]:
    floor = model.quality_limits.floor(test_auc)
    series = mq.auc_series(history, champion, previous)
    mine = history[history["model_version"] == champion] if champion is not None else history
    curves = {
        f"v{v}": mq.pooled_calibration(history, v) for v in sorted(set(history["model_version"]))
    }
    table_rows = mine.sort_values([mq.WINDOW, "source"]).tail(10)
    metadata: dict[str, object] = {
        "windows": int(history[mq.WINDOW].nunique()),
        "floor_roc_auc": dg.MetadataValue.text(f"{floor:.4f}"),
        "quality_over_time": dg.MetadataValue.md(
            markdown_image(
                quality_chart(series, floor=floor, title=f"{model.name}: realised ROC AUC"),
                "quality",
            )
        ),
        "reliability": dg.MetadataValue.md(
            markdown_image(
                reliability_chart(curves, title=f"{model.name}: calibration on outcomes"),
                "reliability",
            )
        ),
        "champion_windows": dg.MetadataValue.md(
            "| window | source | rows | positive rate | ROC AUC | PR AUC | log loss | previous "
            "ROC AUC |\n|---|---|---|---|---|---|---|---|\n"
            + "\n".join(
                f"| {r[mq.WINDOW]} | {r['source']} | {r['rows']} | {r['positive_rate']:.3f} | "
                f"{_fmt(r['roc_auc'])} | {_fmt(r['pr_auc'])} | {r['log_loss']:.4f} | "
                f"{_fmt(r['previous_roc_auc'])} |"
                for _, r in table_rows.iterrows()
            )
        ),
    }
    if len(table_rows):
        latest = table_rows.iloc[-1]
        metadata |= {
            "latest_window": str(latest[mq.WINDOW]),
            "latest_source": str(latest["source"]),
            "latest_rows": int(latest["rows"]),
            "latest_roc_auc": None
            if pd.isna(latest["roc_auc"])
            else round(float(latest["roc_auc"]), 4),
            "latest_log_loss": round(float(latest["log_loss"]), 4),
        }
    return metadata


def _fmt(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.4f}"


def quality_history(lakehouse: Lakehouse, model: ModelDeclaration) -> pd.DataFrame | None:
    table = mq.model_quality_table(model)
    if lakehouse.version(table) is None:
        return None
    return lakehouse.read(table).toPandas()


def build_model_quality_check(model: ModelDeclaration) -> dg.AssetChecksDefinition:
    limits = model.quality_limits
    key = dg.AssetKey(model.model_quality_key)

    @dg.asset_check(
        asset=key,
        name=names.CHECK_MODEL_QUALITY,
        blocking=False,
        description=f"The champion's realised ROC AUC per window against its floor (at least "
        f"{limits.min_roc_auc}, and at most {limits.max_auc_drop} below its test ROC AUC) and "
        f"against the previous champion on the same rows (a lead of {limits.regression_margin} "
        f"is a regression): ERROR when {limits.k} of the last {limits.n} judged windows breach, "
        "the latest included; the metadata says roll back (regression) or retrain (decay).",
    )
    def _within_limits(lakehouse: Lakehouse, model_registry: ModelRegistry) -> dg.AssetCheckResult:
        registry = model_registry.open()
        name = registry.full_name(model.registered_model)
        champion, previous, test_auc = mq.champion_versions(registry, name)
        history = quality_history(lakehouse, model)
        if champion is None or history is None:
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"Nothing to judge yet: {name} has no champion or "
                f"{mq.model_quality_table(model).name} does not exist; materialize "
                f"{key.to_user_string()}.",
                metadata={"level": "not_judged"},
            )
        source, worst, levels = mq.judge(history, champion, test_auc, limits)
        error = worst.level == "error"
        started = min(worst.breaches).isoformat() if worst.breaches else ""
        return dg.AssetCheckResult(
            passed=worst.level == "ok",
            severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
            description=f"v{champion} ({source}): {worst.description}",
            metadata={
                "level": worst.level,
                "action": worst.action,
                "cause": worst.cause,
                "source": source,
                "champion_version": dg.MetadataValue.text(str(champion)),
                "previous_champion_version": dg.MetadataValue.text(str(previous or "none")),
                "floor_roc_auc": dg.MetadataValue.text(f"{worst.floor:.4f}"),
                "judged_windows": worst.judged,
                "breach_started": started,
                "levels_by_source": dg.MetadataValue.json(levels),
                **{k: dg.MetadataValue.text(str(v)) for k, v in limits.model_dump().items()},
            },
        )

    return _within_limits


def canary_config(model: ModelDeclaration) -> type[dg.Config]:
    declared = CanaryLimits()

    class CanaryVerdictConfig(dg.Config):
        act: bool = Field(
            False,
            description="act on the verdict: promote the challenger (champion alias) or "
            "refuse it (its challenger alias removed, so the endpoint stops serving it), "
            "through the registry's audited path. Off: the verdict is only reported.",
        )
        min_rows_per_arm: int = Field(
            declared.min_rows_per_arm, ge=30, description="matured rows each version needs"
        )
        margin: float = Field(
            declared.margin,
            ge=0,
            le=1,
            description="log loss the challenger may lose and still be promoted",
        )

        def limits(self) -> CanaryLimits:
            return CanaryLimits(min_rows_per_arm=self.min_rows_per_arm, margin=self.margin)

    CanaryVerdictConfig.__name__ = f"{model.stem}_canary_verdict_config"
    return CanaryVerdictConfig


def build_canary_verdict(model: ModelDeclaration) -> dg.AssetsDefinition:
    key = dg.AssetKey(model.canary_verdict_key)
    Config = canary_config(model)

    @dg.asset(
        key=key,
        group_name=names.MONITORING,
        deps=[dg.AssetKey(model.inference_log_key), DAILY_KEY, dg.AssetKey(model.champion_key)],
        kinds={"mlflow"},
        description=f"The verdict on {model.name}'s pending challenger (canary or shadow): its "
        "realised log loss against the champion's on the traffic each answered (inference "
        "log), by a bootstrap interval with a minimum sample per version: promote, wait or "
        "roll back, with the evidence. Acting on it is opt-in (config act).",
    )
    def _canary_verdict(
        context: dg.AssetExecutionContext,
        config: Config,
        lakehouse: Lakehouse,
        model_registry: ModelRegistry,
    ) -> dg.MaterializeResult:
        registry = model_registry.open()
        name = registry.full_name(model.registered_model)
        champion = registry.by_alias(name, aliases.CHAMPION)
        challenger = registry.by_alias(name, aliases.CHALLENGER)
        if champion is None or challenger is None:
            why = "no champion" if champion is None else "no challenger is pending"
            context.log.info("%s: %s, no canary to judge", name, why)
            return dg.MaterializeResult(
                metadata={"verdict": "none", "reason": f"{name}: {why}: nothing to judge."}
            )
        versions = (str(champion.version), str(challenger.version))
        labels, scores = _arms(lakehouse, model, versions)
        found = verdict(
            (versions[0], labels[0], scores[0]),
            (versions[1], labels[1], scores[1]),
            config.limits(),
        )
        acted = "no (act is off)" if not config.act else "no (nothing to act on)"
        if config.act and found.decision != "wait":
            reason = f"canary verdict {found.decision}: {found.reason}"[:500]
            if found.decision == "promote":
                aliases.promote(
                    registry, name, versions[1], reason=reason, dagster_run_id=context.run.run_id
                )
            else:
                aliases.refuse(
                    registry, name, versions[1], reason=reason, dagster_run_id=context.run.run_id
                )
            acted = f"yes: {found.decision}"
        registry.set_tag(name, versions[1], "ml_assets.canary.verdict", found.decision)
        registry.set_tag(name, versions[1], "ml_assets.canary.reason", found.reason[:500])
        context.log.info("%s v%s: %s (%s)", name, versions[1], found.decision, found.reason)
        return dg.MaterializeResult(metadata=_verdict_metadata(found, acted))

    return _canary_verdict


def _arms(lakehouse: Lakehouse, model: ModelDeclaration, versions: tuple[str, str]):
    """(labels, predictions) of the matured inference-log rows each version answered."""
    empty = [np.zeros(0), np.zeros(0)]
    log = mq.read_if_exists(lakehouse, _inference_log(model))
    scored = mq.scored_rows(model, None, log)
    if scored is None:
        return empty, list(empty)
    scored = scored.where(scored["model_version"].isin([int(v) for v in versions]))
    rows = mq.matured(model, lakehouse.read(user_daily_activity.CONTRACT.table_spec), scored)
    labels, predictions = [], []
    for version in versions:
        mine = rows[rows["model_version"] == int(version)]
        labels.append(mine[model.label].to_numpy(dtype="float64"))
        predictions.append(mine[mq.PREDICTION].to_numpy(dtype="float64"))
    return labels, predictions


def _arm_row(role: str, arm: Arm) -> str:
    return (
        f"| {role} | v{arm.version} | {arm.rows} | {_fmt(arm.log_loss)} | {_fmt(arm.roc_auc)} | "
        f"{_fmt(arm.positive_rate)} |"
    )


def _verdict_metadata(found, acted: str) -> dict[str, object]:
    metadata: dict[str, object] = {
        "verdict": found.decision,
        "reason": found.reason,
        "acted": acted,
        "champion_version": dg.MetadataValue.text(found.champion.version),
        "challenger_version": dg.MetadataValue.text(found.challenger.version),
        "champion_rows": found.champion.rows,
        "challenger_rows": found.challenger.rows,
        "arms": dg.MetadataValue.md(
            "| arm | version | matured rows | log loss | ROC AUC | positive rate |\n"
            "|---|---|---|---|---|---|\n"
            + "\n".join(
                [_arm_row("champion", found.champion), _arm_row("challenger", found.challenger)]
            )
        ),
    }
    if found.comparison is not None:
        c = found.comparison
        metadata |= {
            "log_loss_difference": round(c.difference, 5),
            "ci_low": round(c.ci_low, 5),
            "ci_high": round(c.ci_high, 5),
            "confidence": dg.MetadataValue.text(str(c.confidence)),
            "min_detectable_difference": round(c.min_detectable_difference, 5),
        }
    return metadata


def build_quality_monitoring(
    model: ModelDeclaration,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """Model quality on delayed labels with its check, and the canary verdict."""
    assets = [build_model_quality(model), build_canary_verdict(model)]
    return assets, [build_model_quality_check(model)]
