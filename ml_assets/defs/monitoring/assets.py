"""``monitoring/feature_drift`` (daily windows) and ``monitoring/prediction_drift``: Evidently
drift against the training reference, recorded in drift metrics tables, with HTML reports
under ``$ML_ASSETS_HOME/reports/``; and the checks that judge them.

``feature_drift_within_limits`` follows mlops-stacks' monitoring: WARN when the latest window
is above the warning threshold; ERROR when the error threshold is breached in ``k`` of the last
``n`` compared windows including the latest. Its metadata names the first window of the
current breach, which the retraining sensor uses to act once per breach.
"""

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.defs.metadata import table_asset_spec, write_metadata
from ml_assets.defs.partitions import partition_dates
from ml_assets.lib.features import user_activity, user_daily_activity, user_profile
from ml_assets.lib.models.churn_classifier import ENCODING, REGISTERED_MODEL
from ml_assets.lib.models.encoding import request_frame
from ml_assets.lib.monitoring.churn import (
    FEATURE_DRIFT,
    PREDICTION_DRIFT,
    REFERENCE_SPLIT,
    WINDOW_KEY,
    breach_started,
    comparable_columns,
    drift_row,
    reference_rows,
    sample,
    window_features,
    window_statuses,
)
from ml_assets.lib.monitoring.drift import drift_report
from ml_assets.lib.serving.batch import PREDICTIONS, SCORED_AT
from ml_assets.lib.training_sets.churn import LABEL_TS, TRAINING_SET
from ml_assets.resources.lakehouse import Lakehouse
from ml_assets.resources.registry import ModelRegistry
from ml_assets.resources.reports import Reports
from ml_assets.resources.spark import SparkResource

ACTIVITY_KEY = dg.AssetKey(names.USER_ACTIVITY_KEY)
CHAMPION_KEY = dg.AssetKey(names.CHURN_CLASSIFIER_CHAMPION_KEY)
PREDICTIONS_KEY = dg.AssetKey(names.CHURN_PREDICTIONS_KEY)
PROFILE_KEY = dg.AssetKey(names.USER_PROFILE_KEY)
TRAINING_SET_KEY = dg.AssetKey(names.CHURN_TRAINING_SET_KEY)
FEATURE_DRIFT_KEY = dg.AssetKey(names.FEATURE_DRIFT_KEY)
PREDICTION_DRIFT_KEY = dg.AssetKey(names.PREDICTION_DRIFT_KEY)
SCORE = "churn_probability"
PREDICTION_METHOD = "wasserstein"  # normed by the reference's spread; drifted at >= 0.1

# mlops-stacks' defaults are per-metric; these are shares of drifted columns
WARN_AT, ERROR_AT, BREACHES_NEEDED, WINDOWS_CONSIDERED = 0.3, 0.5, 2, 5
LIMITS = {"warn_at": WARN_AT, "error_at": ERROR_AT, "k": BREACHES_NEEDED, "n": WINDOWS_CONSIDERED}


def _link(path: str) -> dict[str, object]:
    return {
        "report": dg.MetadataValue.path(path),
        "report_url": dg.MetadataValue.url(Path(path).as_uri()),
    }


def _spark_rows(spark: SparkResource, spec, rows: list[dict[str, object]]):
    return spark.get_session().createDataFrame(
        [tuple(row[c] for c in spec.column_names) for row in rows], spec.spark_schema
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
                    "drifted": d.drifted,
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
                dg.TableColumn("drifted", "bool"),
            ]
        ),
    )


def build_feature_drift(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.multi_asset(
        specs=[
            table_asset_spec(
                FEATURE_DRIFT_KEY,
                FEATURE_DRIFT,
                group=names.MONITORING,
                deps=[ACTIVITY_KEY, PROFILE_KEY, TRAINING_SET_KEY],
                # declarative: the day's window follows its features
                automation_condition=dg.AutomationCondition.eager(),
            )
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        name="feature_drift",
    )
    def feature_drift(
        context: dg.AssetExecutionContext,
        lakehouse: Lakehouse,
        spark: SparkResource,
        reports: Reports,
    ) -> dg.MaterializeResult:
        """Each day of the partition range is one window, compared with the training
        reference (the test split) by Evidently's DataDriftPreset over the model's features."""
        started = time.perf_counter()
        start, end = partition_dates(context)
        ts_version = lakehouse.version(TRAINING_SET)
        if ts_version is None:
            raise dg.Failure(
                f"{TRAINING_SET.name} does not exist: the drift reference is its "
                f"{REFERENCE_SPLIT} split. Materialize training_sets/churn_training_set first."
            )
        reference = reference_rows(lakehouse.read(TRAINING_SET, version=ts_version))
        reference_end = pd.Timestamp(reference[LABEL_TS].max()).date()
        daily = user_daily_activity.CONTRACT.table_spec
        data_start = lakehouse.read(daily).agg(F.min("activity_date")).first()[0]
        columns, left_out = comparable_columns(
            pd.Timestamp(reference[LABEL_TS].min()).date(), data_start
        )
        label = f"{TRAINING_SET.name} v{ts_version}, {REFERENCE_SPLIT} split to {reference_end}"
        days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        after_reference = [d for d in days if d >= reference_end]
        activity, profile = user_activity.CONTRACT.table_spec, user_profile.CONTRACT.table_spec
        versions = {str(s.name): lakehouse.version(s) for s in (activity, profile)}
        current = window_features(lakehouse, after_reference, versions)
        by_day = dict(iter(current.groupby(WINDOW_KEY))) if len(current) else {}
        latest_day = max(by_day, default=None)
        empty = [d.isoformat() for d in after_reference if d not in by_day]
        if empty:  # not drift, but not nothing either: the features of those days are missing
            context.log.warning(
                "%d window(s) after the reference period have no eligible user, not compared: %s",
                len(empty),
                ", ".join(empty),
            )
        computed_at = dt.datetime.now(dt.UTC)
        rows, results = [], {}
        for day in days:
            window = by_day.get(day)
            if window is None or window.empty:  # the reference period, or nobody (logged)
                rows.append(
                    drift_row(
                        day,
                        None,
                        reference=label,
                        reference_rows=len(reference),
                        report_path=None,
                        computed_at=computed_at,
                    )
                )
                continue
            result = drift_report(reference, sample(window), columns)
            # a report is 4-5 MB (Evidently inlines its scripts): a backfill keeps the latest
            # window's and those of the windows worth opening, at or above the warning level
            keep = day == latest_day or result.share_drifted >= WARN_AT
            path = reports.write(f"feature_drift/{day}.html", result.html) if keep else None
            results[day] = (result, path)
            rows.append(
                drift_row(
                    day,
                    result,
                    reference=label,
                    reference_rows=len(reference),
                    report_path=path,
                    computed_at=computed_at,
                )
            )
            context.log.info(
                "window %s: %d of %d columns drifted (%.2f) %s",
                day,
                result.drifted_count,
                len(result.columns),
                result.share_drifted,
                ", ".join(result.drifted_columns),
            )
        commit = lakehouse.merge(FEATURE_DRIFT, _spark_rows(spark, FEATURE_DRIFT, rows))
        metadata: dict[str, object] = {
            **write_metadata(
                FEATURE_DRIFT,
                commit,
                lakehouse.uri(FEATURE_DRIFT),
                total_rows=lakehouse.read(FEATURE_DRIFT).count(),
            ),
            "partition_range": f"{start}..{end}",
            "windows": len(days),
            "windows_compared": len(results),
            "windows_without_users": dg.MetadataValue.json(empty),
            "reports_written": sum(path is not None for _, path in results.values()),
            "reference": label,
            "reference_rows": len(reference),
            "columns_compared": len(columns),
            "columns_left_out": dg.MetadataValue.json(left_out),
            "feature_versions": dg.MetadataValue.json(versions),
            "seconds": round(time.perf_counter() - started, 1),
        }
        if results:
            latest = max(results)
            result, path = results[latest]
            metadata |= {
                "latest_window": latest.isoformat(),
                "share_drifted": round(result.share_drifted, 4),
                "drifted_columns": ", ".join(result.drifted_columns) or "none",
                "column_scores": _column_table(result),
                **_link(path),
                "windows_table": dg.MetadataValue.md(
                    "| window | share drifted | drifted columns |\n|---|---|---|\n"
                    + "\n".join(
                        f"| {d} | {r.share_drifted:.2f} | {', '.join(r.drifted_columns)} |"
                        for d, (r, _) in sorted(results.items())
                    )
                ),
            }
        else:
            metadata["note"] = (
                f"No window after the reference period (label_ts to {reference_end}) in "
                f"{start}..{end}: nothing compared."
            )
        return dg.MaterializeResult(metadata=metadata)

    return feature_drift


def feature_drift_history(lakehouse: Lakehouse) -> list[tuple[dt.date, float]]:
    """(window, share drifted) of every compared window, oldest first."""
    if lakehouse.version(FEATURE_DRIFT) is None:
        return []
    rows = (
        lakehouse.read(FEATURE_DRIFT)
        .where(F.col("compared"))
        .select(WINDOW_KEY, "share_drifted")
        .orderBy(WINDOW_KEY)
        .collect()
    )
    return [(r[WINDOW_KEY], float(r["share_drifted"])) for r in rows]


@dg.asset_check(
    asset=FEATURE_DRIFT_KEY,
    name=names.CHECK_FEATURE_DRIFT,
    blocking=False,
    description=f"WARN when the latest window's share of drifted columns is at or above "
    f"{WARN_AT}; ERROR when it is at or above {ERROR_AT} in {BREACHES_NEEDED} of the last "
    f"{WINDOWS_CONSIDERED} compared windows, the latest included.",
)
def feature_drift_within_limits(lakehouse: Lakehouse) -> dg.AssetCheckResult:
    history = feature_drift_history(lakehouse)
    if not history:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="No window after the reference period has been compared yet: "
            "materialize monitoring/feature_drift for days after the training data.",
            metadata={"windows_compared": 0},
        )
    statuses = window_statuses(history, **LIMITS)
    latest = statuses[-1]
    started = breach_started(statuses)
    recent = statuses[-WINDOWS_CONSIDERED:]
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
                {s.day.isoformat(): round(s.share, 4) for s in recent}
            ),
            **LIMITS,
        },
    )


@dg.multi_asset(
    specs=[
        table_asset_spec(
            PREDICTION_DRIFT_KEY,
            PREDICTION_DRIFT,
            group=names.MONITORING,
            deps=[PREDICTIONS_KEY, TRAINING_SET_KEY, CHAMPION_KEY],
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            names.CHECK_PREDICTION_DRIFT,
            asset=PREDICTION_DRIFT_KEY,
            description="The newest batch's score distribution has not drifted from the "
            "model's scores on the reference rows (WARN).",
        )
    ],
    name="prediction_drift",
)
def prediction_drift(
    context: dg.AssetExecutionContext,
    lakehouse: Lakehouse,
    spark: SparkResource,
    model_registry: ModelRegistry,
    reports: Reports,
):
    """The newest batch of churn probabilities against the same model version's scores on
    the reference rows (the training set's test split)."""
    started = time.perf_counter()
    if lakehouse.version(PREDICTIONS) is None:
        raise dg.Failure(
            f"{PREDICTIONS.name} does not exist: materialize serving/churn_predictions first."
        )
    predictions = lakehouse.read(PREDICTIONS)
    newest = predictions.agg(F.max(SCORED_AT)).first()[0]
    batch = predictions.where(F.col(SCORED_AT) == F.lit(newest)).toPandas()
    version = int(batch["model_version"].max())
    batch = batch[batch["model_version"] == version]
    registry = model_registry.open()
    model_name = registry.full_name(REGISTERED_MODEL)
    model = registry.load(model_name, version)
    ts_version = lakehouse.version(TRAINING_SET)
    reference = reference_rows(lakehouse.read(TRAINING_SET, version=ts_version))
    reference_scores = np.asarray(model.predict(request_frame(reference, ENCODING)), "float64")
    result = drift_report(
        pd.DataFrame({SCORE: reference_scores}),
        batch[[SCORE]].reset_index(drop=True),
        [SCORE],
        # a distance, at every scale: a p-value flags a 0.003 shift of the mean on 300 rows
        num_method=PREDICTION_METHOD,
    )
    column = result.columns[SCORE]
    stamp = pd.Timestamp(newest).strftime("%Y-%m-%dT%H%M")
    path = reports.write(f"prediction_drift/{stamp}-v{version}.html", result.html)
    row = {
        SCORED_AT: newest,
        "model_version": version,
        "method": column.method,
        "score": column.score,
        "threshold": column.threshold,
        "drifted": column.drifted,
        "reference_mean": float(reference_scores.mean()),
        "current_mean": float(batch[SCORE].mean()),
        "reference_rows": len(reference_scores),
        "current_rows": len(batch),
        "report_path": path,
        "computed_at": dt.datetime.now(dt.UTC),
    }
    commit = lakehouse.merge(PREDICTION_DRIFT, _spark_rows(spark, PREDICTION_DRIFT, [row]))
    context.log.info(
        "scores at %s by v%s: %s %.4f (threshold %s), mean %.3f vs reference %.3f",
        newest,
        version,
        column.method,
        column.score,
        column.threshold,
        row["current_mean"],
        row["reference_mean"],
    )
    summary = {
        "scored_at": pd.Timestamp(newest).isoformat(),
        "model": f"{model_name} v{version}",
        "method": column.method,
        "score": round(column.score, 4),
        "threshold": column.threshold,
        "drifted": column.drifted,
        "reference_mean": round(row["reference_mean"], 4),
        "current_mean": round(row["current_mean"], 4),
    }
    yield dg.MaterializeResult(
        metadata={
            **write_metadata(
                PREDICTION_DRIFT,
                commit,
                lakehouse.uri(PREDICTION_DRIFT),
                total_rows=lakehouse.read(PREDICTION_DRIFT).count(),
            ),
            **summary,
            "reference": f"{TRAINING_SET.name} v{ts_version}, {REFERENCE_SPLIT} split",
            "reference_rows": len(reference_scores),
            "current_rows": len(batch),
            **_link(path),
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    yield dg.AssetCheckResult(
        check_name=names.CHECK_PREDICTION_DRIFT,
        passed=not column.drifted,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"scores {'drifted' if column.drifted else 'did not drift'}: {column.method} "
            f"{column.score:.4f} against threshold {column.threshold}; mean "
            f"{row['current_mean']:.3f} (reference {row['reference_mean']:.3f})"
        ),
        metadata=summary,
    )
