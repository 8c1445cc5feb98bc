"""Churn labels and the point-in-time churn training set, with the checks that guard it.

The training set's lineage (Delta versions of the labels and of every feature table, the
split cutoffs and the content hash) is recorded in its materialization metadata; the
checks read it back from the latest materialization, so "Execute checks" in the UI later
still compares against the exact inputs that built the table.
"""

import datetime as dt
import time

import dagster as dg
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.defs.checks import standard_table_checks, table_check
from ml_assets.defs.metadata import (
    LINEAGE,
    check_result,
    recorded_lineage,
    table_asset_spec,
    write_metadata,
)
from ml_assets.lib.features import user_activity, user_daily_activity, user_profile
from ml_assets.lib.quality import CheckOutcome
from ml_assets.lib.training_sets import checks, content_hash
from ml_assets.lib.training_sets.churn import (
    CHURN_LOOKUPS,
    LABEL,
    LABEL_TS,
    LABELS,
    LOOKBACKS,
    MODEL_FEATURES,
    SPLIT,
    SPLITS,
    TRAINING_SET,
    Lineage,
    SplitCutoffs,
    build_churn_training_set,
    compute_churn_labels,
)
from ml_assets.resources.lakehouse import Lakehouse

ACTIVITY_KEY = dg.AssetKey(names.USER_ACTIVITY_KEY)
DAILY_KEY = dg.AssetKey(names.USER_DAILY_ACTIVITY_KEY)
PROFILE_KEY = dg.AssetKey(names.USER_PROFILE_KEY)
LABELS_KEY = dg.AssetKey(names.CHURN_LABELS_KEY)
TRAINING_SET_KEY = dg.AssetKey(names.CHURN_TRAINING_SET_KEY)
LEAK_AUC_THRESHOLD = 0.95


@dg.multi_asset(
    specs=[table_asset_spec(LABELS_KEY, LABELS, group=names.TRAINING_SETS, deps=[DAILY_KEY])],
    name="churn_labels",
)
def churn_labels(context: dg.AssetExecutionContext, lakehouse: Lakehouse):
    """Weekly churn labels over the days user_daily_activity covers (rebuilt whole)."""
    daily = lakehouse.read(user_daily_activity.CONTRACT.table_spec)
    bounds = daily.select(F.min("activity_date"), F.max("activity_date")).first()
    first_day, last_day = bounds[0], bounds[1]
    commit = lakehouse.overwrite(LABELS, compute_churn_labels(daily, first_day, last_day))
    rows = (
        lakehouse.read(LABELS)
        .groupBy(LABEL_TS)
        .agg(F.count(F.lit(1)).alias("users"), F.avg(LABEL).alias("churn_rate"))
        .orderBy(LABEL_TS)
        .collect()
    )
    total = sum(r["users"] for r in rows)
    churned = sum(r["users"] * r["churn_rate"] for r in rows)
    context.log.info(
        "churn_labels: %d observations at %d times, churn rate %.3f",
        total,
        len(rows),
        churned / total,
    )
    yield dg.MaterializeResult(
        asset_key=LABELS_KEY,
        metadata={
            **write_metadata(LABELS, commit, lakehouse.uri(LABELS), total_rows=total),
            "data_days": f"{first_day}..{last_day}",
            "observation_times": len(rows),
            "churn_rate": round(churned / total, 4),
            "per_observation_time": dg.MetadataValue.md(
                "| label_ts | users | churn rate |\n|---|---|---|\n"
                + "\n".join(
                    f"| {r[LABEL_TS].date()} | {r['users']} | {r['churn_rate']:.3f} |" for r in rows
                )
            ),
        },
    )


class TrainingSetConfig(dg.Config):
    """Split cutoffs (ISO dates). Unset: the last ~20 % of observation times are the test
    split and the ~20 % before them validation."""

    validation_start: str | None = None
    test_start: str | None = None

    def cutoffs(self) -> SplitCutoffs | None:
        if self.validation_start is None and self.test_start is None:
            return None
        if self.validation_start is None or self.test_start is None:
            raise ValueError("Set both validation_start and test_start, or neither.")
        return SplitCutoffs(
            validation_start=dt.date.fromisoformat(self.validation_start),
            test_start=dt.date.fromisoformat(self.test_start),
        )


def _column_lineage() -> dg.TableColumnLineage:
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for column in LABELS.column_names:
        deps[column] = [dg.TableColumnDep(asset_key=LABELS_KEY, column_name=column)]
    for lookup, key, contract in (
        (CHURN_LOOKUPS[0], ACTIVITY_KEY, user_activity.CONTRACT),
        (CHURN_LOOKUPS[1], PROFILE_KEY, user_profile.CONTRACT),
    ):
        for name in contract.feature_names:
            deps[lookup.output_name(name)] = [dg.TableColumnDep(asset_key=key, column_name=name)]
        deps[lookup.matched_timestamp_column] = [
            dg.TableColumnDep(asset_key=key, column_name=contract.timestamp_key)
        ]
    return dg.TableColumnLineage(deps_by_column=deps)


@dg.multi_asset(
    specs=[
        table_asset_spec(
            TRAINING_SET_KEY,
            TRAINING_SET,
            group=names.TRAINING_SETS,
            deps=[LABELS_KEY, ACTIVITY_KEY, PROFILE_KEY],
            metadata={
                "model_features": ", ".join(MODEL_FEATURES),
                "lookups": "; ".join(
                    f"{lk.table_name} (lookback {lk.lookback_window or 'none'})"
                    for lk in CHURN_LOOKUPS
                ),
            },
        )
    ],
    name="churn_training_set",
)
def churn_training_set(
    context: dg.AssetExecutionContext, config: TrainingSetConfig, lakehouse: Lakehouse
):
    """Labels joined point-in-time with the feature tables, split by time, lineage-pinned."""
    started = time.perf_counter()
    training, cutoffs = build_churn_training_set(lakehouse, cutoffs=config.cutoffs())
    commit = lakehouse.overwrite(TRAINING_SET, training.df)
    written = lakehouse.read(TRAINING_SET, version=commit.version)
    lineage = Lineage(training.table_versions, cutoffs, content_hash(written))
    seconds = time.perf_counter() - started
    splits = {
        r[SPLIT]: (r["rows"], r["churn_rate"])
        for r in written.groupBy(SPLIT)
        .agg(F.count(F.lit(1)).alias("rows"), F.avg(LABEL).alias("churn_rate"))
        .collect()
    }
    total = sum(rows for rows, _ in splits.values())
    matched = written.select(
        *[F.avg(F.col(c).isNotNull().cast("double")).alias(c) for c in LOOKBACKS]
    ).first()
    context.log.info(
        "churn_training_set: %d rows in %.1f s; versions %s; hash %s",
        total,
        seconds,
        lineage.table_versions,
        lineage.content_hash[:12],
    )
    yield dg.MaterializeResult(
        asset_key=TRAINING_SET_KEY,
        metadata={
            **write_metadata(TRAINING_SET, commit, lakehouse.uri(TRAINING_SET), total_rows=total),
            LINEAGE: dg.MetadataValue.json(lineage.as_metadata()),
            **{
                f"version_{name.split('.')[-1]}": version
                for name, version in lineage.table_versions.items()
            },
            "content_hash": lineage.content_hash,
            "dagster/column_lineage": _column_lineage(),
            **{f"rows_{s}": splits.get(s, (0, 0))[0] for s in SPLITS},
            **{f"churn_rate_{s}": round(splits.get(s, (0, 0))[1] or 0, 4) for s in SPLITS},
            "validation_start": lineage.cutoffs.validation_start.isoformat(),
            "test_start": lineage.cutoffs.test_start.isoformat(),
            **{f"match_rate_{c}": round(matched[c] or 0, 4) for c in LOOKBACKS},
            "seconds": round(seconds, 2),
        },
    )


def _lineage_check(name: str, description: str, evaluate) -> dg.AssetChecksDefinition:
    """A blocking check that needs the lineage of the latest materialization."""

    @dg.asset_check(asset=TRAINING_SET_KEY, name=name, description=description, blocking=True)
    def _check(context: dg.AssetCheckExecutionContext, lakehouse: Lakehouse):
        lineage = recorded_lineage(context.instance, TRAINING_SET_KEY)
        if lineage is None:
            outcome = CheckOutcome(
                False,
                "No materialization of the training set with recorded lineage: materialize it.",
                {},
            )
        else:
            outcome = evaluate(lakehouse, lineage)
        return check_result(outcome)

    return _check


def _labels_at(lakehouse: Lakehouse, lineage: Lineage):
    return lakehouse.read(LABELS, version=lineage.table_versions[str(LABELS.name)])


def build_training_set_checks() -> list[dg.AssetChecksDefinition]:
    key_columns = [*LABELS.column_names]
    return [
        *standard_table_checks(
            LABELS_KEY, LABELS, constraints={"churned_is_0_or_1": f"{LABEL} IN (0, 1)"}
        ),
        *standard_table_checks(TRAINING_SET_KEY, TRAINING_SET),
        table_check(
            TRAINING_SET_KEY,
            names.CHECK_NO_FUTURE_FEATURES,
            "Every matched feature timestamp is at or before label_ts and within its lookup's "
            "lookback window.",
            lambda lh: checks.no_future_feature_values(lh.read(TRAINING_SET), LABEL_TS, LOOKBACKS),
        ),
        _lineage_check(
            names.CHECK_ONE_ROW_PER_SPINE_ROW,
            "Each label row appears exactly once (as often as in the labels version used).",
            lambda lh, lineage: checks.one_row_per_spine_row(
                _labels_at(lh, lineage), lh.read(TRAINING_SET), key_columns
            ),
        ),
        _lineage_check(
            names.CHECK_MATCHES_REFERENCE,
            "A sample of 200 label rows, recomputed by a naive pure-Python point-in-time join "
            "from the recorded table versions, equals the training set row by row.",
            lambda lh, lineage: checks.matches_reference_join(
                lh.read(TRAINING_SET),
                _labels_at(lh, lineage),
                CHURN_LOOKUPS,
                tables=lh,
                versions=lineage.table_versions,
                spine_columns=key_columns,
            ),
        ),
        table_check(
            TRAINING_SET_KEY,
            names.CHECK_SPLIT_TIME_ORDERED,
            "train < validation < test by label_ts, none empty.",
            lambda lh: checks.split_is_time_ordered(lh.read(TRAINING_SET), LABEL_TS, SPLIT, SPLITS),
        ),
        table_check(
            TRAINING_SET_KEY,
            names.CHECK_NO_SINGLE_FEATURE_LEAK,
            f"No single model feature predicts the label with ROC AUC >= {LEAK_AUC_THRESHOLD} "
            "on its own (suspected leakage).",
            lambda lh: checks.no_single_feature_leak(
                lh.read(TRAINING_SET), LABEL, MODEL_FEATURES, threshold=LEAK_AUC_THRESHOLD
            ),
            blocking=False,
            severity=dg.AssetCheckSeverity.WARN,
        ),
    ]
