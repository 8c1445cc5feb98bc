"""Drift monitoring for every declared model (``build_monitoring(model)``):
``monitoring/<stem>_feature_drift`` (daily windows) and ``monitoring/<stem>_prediction_drift``,
Evidently drift against the training reference, recorded in drift metrics tables; and the
checks that judge them. Kept HTML reports go to the ``reports`` store
(``$ML_ASSETS_HOME/reports/`` locally, a volume on Databricks) and, as artifacts, to an MLflow
run of the monitor, whose UI serves them over HTTP: the metadata links there. Each partition
(day) carries its own window. The windowing,
the reference and report retention are ``lib/monitoring/monitor.DriftMonitor``'s.

``feature_drift_within_limits`` follows mlops-stacks' monitoring: WARN when the latest window
is above the warning threshold; ERROR when the error threshold is breached in ``k`` of the last
``n`` compared windows including the latest (the model's declared ``drift_limits``). Its
metadata names the first window of the current breach, which the retraining sensor uses to act
once per breach.
"""

import datetime as dt
import time
from collections.abc import Callable
from typing import TypeVar

import dagster as dg
import pandas as pd
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.defs.metadata import table_asset_spec, table_key, write_metadata
from ml_assets.defs.partitions import partition_dates, report_per_partition
from ml_assets.lib.lakehouse import TableSpec
from ml_assets.lib.links import MlflowLinks
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.monitoring.monitor import (
    WINDOW_KEY,
    DriftInputError,
    DriftMonitor,
    WindowComparison,
    breach_started,
)
from ml_assets.lib.monitoring.plots import drift_share_chart, markdown_image
from ml_assets.lib.registry.aliases import CHAMPION
from ml_assets.lib.serving.batch import SCORED_AT
from ml_assets.lib.tracking import log_metric_series, log_text_artifact
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.links import UiLinks
from ml_assets.resources.mlflow import MlflowTracking
from ml_assets.resources.registry import ModelRegistry
from ml_assets.resources.reports import Reports
from ml_assets.resources.spark import SparkResource

ACTIVITY_KEY = dg.AssetKey(names.USER_ACTIVITY_KEY)
PROFILE_KEY = dg.AssetKey(names.USER_PROFILE_KEY)
T = TypeVar("T")


class ReportSink:
    """Where a kept report goes: the deployment's report store (``reports``), and the open
    MLflow run of the monitor as an artifact, which the MLflow UI serves over HTTP and renders
    (a ``file://`` link is refused by a browser from the Dagster UI). Remembers each report's
    MLflow UI address."""

    def __init__(self, reports: Reports, links: MlflowLinks | None):
        self.reports, self.links = reports, links
        self.urls: dict[str, str] = {}

    def __call__(self, relative_path: str, html: str) -> str:
        where = self.reports.write(relative_path, html)
        artifact = f"reports/{relative_path}"
        logged = log_text_artifact(html, artifact)
        if self.links is not None and logged is not None:
            self.urls[where] = self.links.artifact(*logged, artifact)
        return where

    def link(self, where: str) -> dict[str, object]:
        found: dict[str, object] = {"report": dg.MetadataValue.path(where)}
        if where in self.urls:
            found["report_url"] = dg.MetadataValue.url(self.urls[where])
        return found


def _monitor_run(
    context: dg.AssetExecutionContext,
    mlflow_tracking: MlflowTracking,
    ui_links: UiLinks,
    model: ModelDeclaration,
    run_name: str,
):
    """The MLflow run a monitor's reports and metrics are logged to, linked to Dagster."""
    dagster = ui_links.dagster()
    tags = {
        names.TAG_MODEL: model.name,
        names.TAG_MONITOR: context.assets_def.key.path[-1],
        names.TAG_DAGSTER_RUN_ID: context.run.run_id,
        names.TAG_DAGSTER_RUN_URL: dagster.run(context.run.run_id),
        names.TAG_DAGSTER_ASSET_URL: dagster.asset(context.assets_def.key.path),
        names.NOTE_TAG: f"Drift reports of {model.name} from Dagster run "
        f"[{context.run.run_id[:8]}]({dagster.run(context.run.run_id)}), asset "
        f"[{context.assets_def.key.to_user_string()}]"
        f"({dagster.asset(context.assets_def.key.path)}).",
    }
    return mlflow_tracking.run(run_name, tags=tags)


def _champion_version(model_registry: ModelRegistry, model: ModelDeclaration) -> str:
    registry = model_registry.open()
    name = registry.full_name(model.registered_model)
    champion = registry.by_alias(name, CHAMPION)
    return f"{name} v{champion.version} (champion)" if champion else f"{name}: no champion yet"


def merge_rows(
    lakehouse: Lakehouse,
    spark: SparkResource,
    table: TableSpec,
    rows: list[dict[str, object]],
    *,
    range_run: bool = False,
) -> dict[str, object]:
    """Merge a monitor's rows (one dict per row, by column name) into its table; the table's
    write metadata after it."""
    frame = spark.get_session().createDataFrame(
        [tuple(row[c] for c in table.column_names) for row in rows], table.spark_schema
    )
    commit = lakehouse.merge(table, frame)
    total = lakehouse.read(table).count()
    return write_metadata(
        table, commit, lakehouse.uri(table), total_rows=total, range_run=range_run
    )


def _column_table(result) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "column": column,
                    "method": d.method,
                    "score": round(d.score, 4),
                    "threshold": d.threshold,
                    "drifted": "yes" if d.drifted else "no",  # a bool column shows t/f
                }
            )
            for column, d in sorted(result.columns.items(), key=lambda kv: not kv[1].drifted)
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("column", "string"),
                dg.TableColumn("method", "string"),
                dg.TableColumn("score", "float"),
                dg.TableColumn("threshold", "float"),
                dg.TableColumn("drifted", "string"),
            ]
        ),
    )


def _inputs(read: Callable[..., T], *args) -> T:
    """``read(*args)``, a missing input turned into a Failure naming what to materialize."""
    try:
        return read(*args)
    except DriftInputError as exc:
        raise dg.Failure(str(exc)) from None


def build_feature_drift(
    model: ModelDeclaration, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    monitor = DriftMonitor(model)
    key, table = dg.AssetKey(model.feature_drift_key), monitor.feature_drift
    deps = [ACTIVITY_KEY, PROFILE_KEY, table_key(model.training_set.table_name)]

    @dg.multi_asset(
        specs=[
            table_asset_spec(
                key,
                table,
                group=names.MONITORING,
                deps=deps,
                # declarative: the day's window follows its features
                automation_condition=dg.AutomationCondition.eager(),
            )
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        name=key.path[-1],
    )
    def _feature_drift(
        context: dg.AssetExecutionContext,
        lakehouse: Lakehouse,
        spark: SparkResource,
        reports: Reports,
        mlflow_tracking: MlflowTracking,
        model_registry: ModelRegistry,
        ui_links: UiLinks,
    ) -> dg.MaterializeResult:
        """Each day of the partition range is one window, compared with the training
        reference (the test split) by Evidently's DataDriftPreset over the model's features;
        the kept reports and the shares are logged to an MLflow run of the monitor."""
        started = time.perf_counter()
        start, end = partition_dates(context)
        days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        inputs = _inputs(monitor.feature_windows, lakehouse, days)
        sink = ReportSink(reports, ui_links.mlflow())
        with _monitor_run(
            context, mlflow_tracking, ui_links, model, f"{model.stem} feature drift {start}..{end}"
        ):
            compared = monitor.compare_windows(
                inputs.reference,
                inputs.reference_label,
                days,
                inputs.current,
                inputs.columns,
                sink,
                log=context.log.info,
                model_version=_champion_version(model_registry, model),
            )
            log_window_shares(compared)
        if compared.empty:  # not drift, but not nothing: the features of those days are missing
            context.log.warning(
                "window(s) after the reference period with no eligible user, not compared: %s",
                ", ".join(compared.empty),
            )
        metadata = merge_rows(lakehouse, spark, table, compared.rows, range_run=start != end)
        metadata |= _feature_drift_metadata(compared, inputs, days, start, end)
        metadata |= _drift_chart(lakehouse, monitor)
        metadata["seconds"] = round(time.perf_counter() - started, 1)
        per_day = _window_metadata(compared, days, inputs.reference_end, sink)
        report_per_partition(context, key, per_day)
        return dg.MaterializeResult(metadata=metadata)

    return _feature_drift


def _feature_drift_metadata(
    compared: WindowComparison, inputs, days: list[dt.date], start: dt.date, end: dt.date
) -> dict[str, object]:
    """The run's figures: its windows, the reference, the columns compared."""
    return {
        "partition_range": f"{start}..{end}",
        "windows": len(days),
        "reference": inputs.reference_label,
        "reference_rows": len(inputs.reference),
        "columns_compared": len(inputs.columns),
        "columns_left_out": dg.MetadataValue.json(inputs.left_out),
        "feature_versions": dg.MetadataValue.json(inputs.feature_versions),
    } | _windows_metadata(compared, inputs.reference_end, start, end)


def _windows_metadata(
    compared: WindowComparison, reference_end: dt.date, start: dt.date, end: dt.date
) -> dict[str, object]:
    results = compared.results
    metadata: dict[str, object] = {
        "windows_compared": len(results),
        "windows_without_users": dg.MetadataValue.json(compared.empty),
        "reports_written": sum(path is not None for _, path in results.values()),
    }
    if not results:
        metadata["note"] = (
            f"No window after the reference period (label_ts to {reference_end}) in "
            f"{start}..{end}: nothing compared."
        )
        return metadata
    return metadata | {
        "latest_window": max(results).isoformat(),
        "windows_table": dg.MetadataValue.md(
            "| window | share drifted | drifted columns |\n|---|---|---|\n"
            + "\n".join(
                f"| {d} | {r.share_drifted:.2f} | {', '.join(r.drifted_columns)} |"
                for d, (r, _) in sorted(results.items())
            )
        ),
    }


def log_window_shares(compared: WindowComparison) -> None:
    """Each window's share of drifted columns on the active MLflow run, one step per window at
    the window's time (the run's chart is the drift over time)."""
    log_metric_series(
        "share_drifted",
        [
            (
                int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000),
                day.toordinal(),
                result.share_drifted,
            )
            for day, (result, _) in sorted(compared.results.items())
        ],
    )


def _drift_chart(lakehouse: Lakehouse, monitor: DriftMonitor) -> dict[str, object]:
    """Every compared window so far (not only this run's), drawn with the warn and error
    levels."""
    history = feature_drift_history(lakehouse, monitor)
    if not history:
        return {}
    chart = drift_share_chart(
        history,
        warn_at=monitor.limits.warn_at,
        error_at=monitor.limits.error_at,
        title=f"{monitor.model.name}: share of drifted columns per daily window",
    )
    return {"drift_over_time": dg.MetadataValue.md(markdown_image(chart, "drift"))}


def _window_metadata(
    compared: WindowComparison,
    days: list[dt.date],
    reference_end: dt.date,
    sink: ReportSink,
) -> dict[dt.date, dict[str, object]]:
    """Each day's own window: its share and columns, its report when kept, or why it was not
    compared. Only compared windows have a ``share_drifted``, so the UI's plot of it over the
    partitions is the drift over time."""
    per_day: dict[dt.date, dict[str, object]] = {}
    empty = set(compared.empty)
    for day in days:
        if day in compared.results:
            result, path = compared.results[day]
            per_day[day] = {
                "window": day.isoformat(),
                "compared": "yes",
                "share_drifted": round(result.share_drifted, 4),
                "drifted_columns": ", ".join(result.drifted_columns) or "none",
                "column_scores": _column_table(result),
                **(sink.link(path) if path is not None else {"report": "not kept for this window"}),
            }
        elif day.isoformat() in empty:
            per_day[day] = {"window": day.isoformat(), "compared": "no: no eligible user"}
        else:
            per_day[day] = {
                "window": day.isoformat(),
                "compared": f"no: inside the reference period (to {reference_end})",
            }
    return per_day


def feature_drift_history(
    lakehouse: Lakehouse, monitor: DriftMonitor
) -> list[tuple[dt.date, float]]:
    """(window, share drifted) of every compared window, oldest first."""
    table = monitor.feature_drift
    if lakehouse.version(table) is None:
        return []
    rows = (
        lakehouse.read(table)
        .where(F.col("compared"))
        .select(WINDOW_KEY, "share_drifted")
        .orderBy(WINDOW_KEY)
        .collect()
    )
    return [(r[WINDOW_KEY], float(r["share_drifted"])) for r in rows]


def build_feature_drift_check(model: ModelDeclaration) -> dg.AssetChecksDefinition:
    monitor = DriftMonitor(model)
    limits = monitor.limits
    key = dg.AssetKey(model.feature_drift_key)

    @dg.asset_check(
        asset=key,
        name=names.CHECK_FEATURE_DRIFT,
        blocking=False,
        description=f"WARN when the latest window's share of drifted columns is at or above "
        f"{limits.warn_at}; ERROR when it is at or above {limits.error_at} in {limits.k} of the "
        f"last {limits.n} compared windows, the latest included.",
    )
    def _within_limits(lakehouse: Lakehouse) -> dg.AssetCheckResult:
        history = feature_drift_history(lakehouse, monitor)
        if not history:
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description="No window after the reference period has been compared yet: "
                f"materialize {key.to_user_string()} for days after the training data.",
                metadata={"windows_compared": 0},
            )
        statuses = monitor.statuses(history)
        latest, started = statuses[-1], breach_started(statuses)
        return dg.AssetCheckResult(
            passed=latest.status.level == "ok",
            severity=dg.AssetCheckSeverity.ERROR
            if latest.status.level == "error"
            else dg.AssetCheckSeverity.WARN,
            description=f"{latest.day}: {latest.status.description}",
            metadata={
                "level": latest.status.level,
                "latest_window": latest.day.isoformat(),
                "share_drifted": round(latest.share, 4),
                "breaches_in_window": latest.status.breaches_in_window,
                "breach_started": started.isoformat() if started else "",
                "recent_windows": dg.MetadataValue.json(
                    {s.day.isoformat(): round(s.share, 4) for s in statuses[-limits.n :]}
                ),
                # the limits as text: constants, which the UI would plot as flat lines
                **{k: dg.MetadataValue.text(str(v)) for k, v in limits.model_dump().items()},
            },
        )

    return _within_limits


def build_prediction_drift(model: ModelDeclaration) -> dg.AssetsDefinition:
    monitor = DriftMonitor(model)
    key, table = dg.AssetKey(model.prediction_drift_key), monitor.prediction_drift
    deps = [
        dg.AssetKey(model.predictions_key),
        table_key(model.training_set.table_name),
        dg.AssetKey(model.champion_key),
    ]

    @dg.multi_asset(
        specs=[table_asset_spec(key, table, group=names.MONITORING, deps=deps)],
        check_specs=[
            dg.AssetCheckSpec(
                names.CHECK_PREDICTION_DRIFT,
                asset=key,
                description="The newest batch's score distribution has not drifted from the "
                "model's scores on the reference rows (WARN).",
            )
        ],
        name=key.path[-1],
    )
    def _prediction_drift(
        context: dg.AssetExecutionContext,
        lakehouse: Lakehouse,
        spark: SparkResource,
        model_registry: ModelRegistry,
        reports: Reports,
        mlflow_tracking: MlflowTracking,
        ui_links: UiLinks,
    ):
        """The newest batch of predictions against the same model version's scores on the
        reference rows (the training set's test split); the report is logged to an MLflow run
        of the monitor."""
        started = time.perf_counter()
        newest = _inputs(monitor.newest_batch, lakehouse)
        version, registry = newest.version, model_registry.open()
        reference = _inputs(monitor.reference_scores, lakehouse, registry, version)
        sink = ReportSink(reports, ui_links.mlflow())
        with _monitor_run(
            context, mlflow_tracking, ui_links, model, f"{model.stem} prediction drift v{version}"
        ):
            row = monitor.compare_scores(
                reference.scores, newest.rows, newest.scored_at, version, sink, reference.label
            )
            now_ms = int(time.time() * 1000)
            for metric in ("score", "current_mean"):
                log_metric_series(metric, [(now_ms, 0, row[metric])])
        summary = _score_summary(row, f"{registry.full_name(model.registered_model)} v{version}")
        context.log.info("prediction drift: %s", summary)
        written = merge_rows(lakehouse, spark, table, [row])
        yield dg.MaterializeResult(
            metadata={
                **written,
                **summary,
                "reference": reference.label,
                "reference_rows": row["reference_rows"],
                "current_rows": row["current_rows"],
                **sink.link(row["report_path"]),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        yield _prediction_drift_check(row, summary)

    return _prediction_drift


def _prediction_drift_check(
    row: dict[str, object], summary: dict[str, object]
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=names.CHECK_PREDICTION_DRIFT,
        passed=not row["drifted"],
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"scores {'drifted' if row['drifted'] else 'did not drift'}: {row['method']} "
            f"{row['score']:.4f} against threshold {row['threshold']}; mean "
            f"{row['current_mean']:.3f} (reference {row['reference_mean']:.3f})"
        ),
        metadata=summary,
    )


def _score_summary(row: dict[str, object], model: str) -> dict[str, object]:
    return {
        "scored_at": pd.Timestamp(row[SCORED_AT]).isoformat(),
        "model": model,
        "method": row["method"],
        "score": round(row["score"], 4),
        "threshold": dg.MetadataValue.text(str(row["threshold"])),  # a constant: no chart
        "drifted": row["drifted"],
        "reference_mean": round(row["reference_mean"], 4),
        "current_mean": round(row["current_mean"], 4),
    }


def build_monitoring(
    model: ModelDeclaration, partitions_def: dg.PartitionsDefinition
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """Feature drift over daily windows with its check, and prediction drift."""
    assets = [build_feature_drift(model, partitions_def), build_prediction_drift(model)]
    return assets, [build_feature_drift_check(model)]
