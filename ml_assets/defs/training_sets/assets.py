"""Labels and point-in-time training sets, with the checks that guard them: one factory that
turns a ``TrainingSetDeclaration`` (lib/training_sets/declaration) into its assets and checks.

The training set's lineage (Delta versions of the labels and of every feature table, the
split cutoffs and the content hash) is recorded in its materialization metadata; the
checks read it back from the latest materialization, so "Execute checks" in the UI later
still compares against the exact inputs that built the table.
"""

import datetime as dt
import time
from collections.abc import Callable

import dagster as dg
from pydantic import Field
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.defs.checks import standard_table_checks, table_check
from ml_assets.defs.config_types import IsoDate
from ml_assets.defs.metadata import (
    LINEAGE,
    check_result,
    recorded_lineage,
    table_asset_spec,
    table_key,
    write_metadata,
)
from ml_assets.lib.features.registry import contract_for
from ml_assets.lib.quality import CheckOutcome
from ml_assets.lib.training_sets import checks, content_hash
from ml_assets.lib.training_sets.declaration import (
    SPLITS,
    Labels,
    Lineage,
    SplitCutoffs,
    TrainingSetDeclaration,
)
from ml_assets.lib.training_sets.lookups import TrainingSet, TrainingSetError
from ml_assets.lib.training_sets.summary import (
    split_drift,
    summarize_labels,
    summarize_training_set,
)
from ml_assets.resources.lakehouse import Lakehouse

LEAK_AUC_THRESHOLD = 0.95
CHECK_SAMPLE_ROWS = 200


class TrainingSetConfig(dg.Config):
    """Split cutoffs (ISO dates). Unset: the last ~20 % of observation times are the test
    split and the ~20 % before them validation."""

    validation_start: IsoDate | None = Field(
        None,
        description="First observation date (YYYY-MM-DD) of the validation split. Unset with "
        "test_start: the ~20 % of observation times before the test split.",
    )
    test_start: IsoDate | None = Field(
        None,
        description="First observation date (YYYY-MM-DD) of the test split. Unset with "
        "validation_start: the last ~20 % of observation times.",
    )

    def cutoffs(self) -> SplitCutoffs | None:
        if self.validation_start is None and self.test_start is None:
            return None
        if self.validation_start is None or self.test_start is None:
            raise ValueError("Set both validation_start and test_start, or neither.")
        return SplitCutoffs(
            validation_start=dt.date.fromisoformat(self.validation_start),
            test_start=dt.date.fromisoformat(self.test_start),
        )


def _rate_key(declaration: TrainingSetDeclaration) -> str:
    return declaration.labels.rate_name.replace(" ", "_")


def first_source_day(lakehouse: Lakehouse, labels: Labels) -> dt.date:
    """The first day of the labels' daily source: where every feature window must start."""
    day = lakehouse.read(labels.source).select(F.min(labels.source_date)).first()[0]
    if day is None:
        raise TrainingSetError(f"{labels.source.name} is empty: materialize it.")
    return day


def build_labels(declaration: TrainingSetDeclaration) -> dg.AssetsDefinition:
    labels = declaration.labels
    key, source_key = table_key(str(labels.table.name)), table_key(str(labels.source.name))
    rate_key = _rate_key(declaration)

    @dg.multi_asset(
        specs=[table_asset_spec(key, labels.table, group=names.TRAINING_SETS, deps=[source_key])],
        name=labels.table.name.table,
    )
    def _labels(context: dg.AssetExecutionContext, lakehouse: Lakehouse):
        daily = lakehouse.read(labels.source)
        day = F.col(labels.source_date)
        first_day, last_day = daily.select(F.min(day), F.max(day)).first()
        if first_day is None:
            raise TrainingSetError(
                f"{labels.source.name} has no rows to compute labels from: materialize it."
            )
        rows = declaration.compute_labels(daily, first_day, last_day)
        commit = lakehouse.overwrite(labels.table, rows)
        summary = summarize_labels(lakehouse.read(labels.table), labels)
        context.log.info(
            "%s: %d observations at %d times, %s %.3f",
            labels.table.name.table,
            summary.rows,
            len(summary.per_time),
            labels.rate_name,
            summary.rate,
        )
        uri = lakehouse.uri(labels.table)
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                **write_metadata(labels.table, commit, uri, total_rows=summary.rows),
                "data_days": f"{first_day}..{last_day}",
                "history_required_days": declaration.history_days,
                "observation_times": len(summary.per_time),
                rate_key: round(summary.rate, 4),
                "per_observation_time": dg.MetadataValue.md(
                    summary.markdown(labels.timestamp, labels.rate_name)
                ),
            },
        )

    return _labels


def _column_lineage(declaration: TrainingSetDeclaration) -> dg.TableColumnLineage:
    labels_key = table_key(str(declaration.labels.table.name))
    deps: dict[str, list[dg.TableColumnDep]] = {
        column: [dg.TableColumnDep(asset_key=labels_key, column_name=column)]
        for column in declaration.labels.table.column_names
    }
    for lookup in declaration.lookups:
        key, contract = table_key(lookup.table_name), contract_for(lookup.table_name)
        for name in contract.feature_names:
            deps[lookup.output_name(name)] = [dg.TableColumnDep(asset_key=key, column_name=name)]
        deps[lookup.matched_timestamp_column] = [
            dg.TableColumnDep(asset_key=key, column_name=contract.timestamp_key)
        ]
    return dg.TableColumnLineage(deps_by_column=deps)


def build_training_set(declaration: TrainingSetDeclaration) -> dg.AssetsDefinition:
    table, key = declaration.table, table_key(declaration.table_name)
    inputs = [table_key(str(declaration.labels.table.name))]
    inputs += [table_key(name) for name in declaration.feature_tables]
    lookups = "; ".join(
        f"{lk.table_name} (lookback {lk.lookback_window or 'none'})" for lk in declaration.lookups
    )
    spec_metadata = {"model_features": ", ".join(declaration.model_features), "lookups": lookups}

    @dg.multi_asset(
        specs=[
            table_asset_spec(
                key, table, group=names.TRAINING_SETS, deps=inputs, metadata=spec_metadata
            )
        ],
        name=declaration.name,
    )
    def _training_set(
        context: dg.AssetExecutionContext, config: TrainingSetConfig, lakehouse: Lakehouse
    ):
        """Labels joined point-in-time with the feature tables, split by time, lineage-pinned."""
        started = time.perf_counter()
        training, cutoffs = declaration.build(lakehouse, cutoffs=config.cutoffs())
        commit = lakehouse.overwrite(table, training.df)
        written = lakehouse.read(table, version=commit.version)
        lineage = Lineage(training.table_versions, cutoffs, content_hash(written))
        summary = summarize_training_set(written, declaration)
        seconds = time.perf_counter() - started
        context.log.info(
            "%s: %d rows in %.1f s; versions %s; hash %s",
            declaration.name,
            summary.rows,
            seconds,
            lineage.table_versions,
            lineage.content_hash[:12],
        )
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                **write_metadata(table, commit, lakehouse.uri(table), total_rows=summary.rows),
                **_lineage_metadata(lineage),
                "dagster/column_lineage": _column_lineage(declaration),
                **_summary_metadata(summary, _rate_key(declaration)),
                **_skew_metadata(written, declaration),
                "join_plans": _join_plans(training),
                "seconds": round(seconds, 2),
            },
        )

    return _training_set


def _join_plans(training: TrainingSet) -> dg.MetadataValue:
    """How each lookup's point-in-time join found its matches, and the counts it chose by."""
    return dg.MetadataValue.json(
        {
            table.split(".")[-1]: {
                "plan": c.strategy,
                "most_spine_rows_per_key": c.most_spine_rows_per_key,
                "pairs": c.pairs,
                "rows": c.rows,
            }
            for table, c in training.join_plans.items()
        }
    )


def _lineage_metadata(lineage: Lineage) -> dict[str, object]:
    return {
        LINEAGE: dg.MetadataValue.json(lineage.as_metadata()),
        **{
            f"version_{name.split('.')[-1]}": version
            for name, version in lineage.table_versions.items()
        },
        "content_hash": lineage.content_hash,
        "validation_start": lineage.cutoffs.validation_start.isoformat(),
        "test_start": lineage.cutoffs.test_start.isoformat(),
    }


def _summary_metadata(summary, rate_key: str) -> dict[str, object]:
    return {
        **{f"rows_{s}": summary.rows_per_split[s] for s in SPLITS},
        **{f"{rate_key}_{s}": round(summary.rate_per_split[s], 4) for s in SPLITS},
        **{f"match_rate_{c}": round(rate, 4) for c, rate in summary.match_rates.items()},
    }


def _skew_metadata(written, declaration: TrainingSetDeclaration) -> dict[str, object]:
    """Train-versus-test drift of the model features: what moved between the rows learned
    from and the rows tested on."""
    drift = split_drift(written, declaration.model_features)
    if drift is None:
        return {}
    return {
        "train_vs_test_drift_share": round(drift.share_drifted, 4),
        "train_vs_test_drifted": ", ".join(drift.drifted_columns) or "none",
    }


Evaluate = Callable[[Lakehouse, Lineage], CheckOutcome]


def _lineage_check(
    key: dg.AssetKey, name: str, description: str, evaluate: Evaluate
) -> dg.AssetChecksDefinition:
    """A blocking check that needs the lineage of the latest materialization."""

    @dg.asset_check(asset=key, name=name, description=description, blocking=True)
    def _check(context: dg.AssetCheckExecutionContext, lakehouse: Lakehouse):
        lineage = recorded_lineage(context.instance, key)
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


def build_training_set_checks(
    declaration: TrainingSetDeclaration,
) -> list[dg.AssetChecksDefinition]:
    labels, table = declaration.labels, declaration.table
    labels_key, key = table_key(str(labels.table.name)), table_key(declaration.table_name)
    key_columns = [*labels.table.column_names]

    def labels_at(lh: Lakehouse, lineage: Lineage):
        return lh.read(labels.table, version=lineage.table_versions[str(labels.table.name)])

    return [
        *standard_table_checks(labels_key, labels.table, constraints=labels.constraints),
        *standard_table_checks(key, table),
        table_check(
            key,
            names.CHECK_NO_FUTURE_FEATURES,
            f"Every matched feature timestamp is at or before {labels.timestamp} and within its "
            "lookup's lookback window.",
            lambda lh: checks.no_future_feature_values(
                lh.read(table), labels.timestamp, declaration.lookbacks
            ),
        ),
        table_check(
            key,
            names.CHECK_FEATURE_WINDOWS_COMPLETE,
            f"No row's windowed features reach before the first day of {labels.source.name} "
            f"(longest windows {declaration.feature_windows} days): a truncated 90-day count "
            "is a value serving never sees (training/serving skew).",
            lambda lh: checks.feature_windows_complete(
                lh.read(table),
                labels.timestamp,
                declaration.feature_windows,
                first_source_day(lh, labels),
            ),
        ),
        _lineage_check(
            key,
            names.CHECK_ONE_ROW_PER_SPINE_ROW,
            "Each label row appears exactly once (as often as in the labels version used).",
            lambda lh, lineage: checks.one_row_per_spine_row(
                labels_at(lh, lineage), lh.read(table), key_columns
            ),
        ),
        _lineage_check(
            key,
            names.CHECK_MATCHES_REFERENCE,
            f"A sample of {CHECK_SAMPLE_ROWS} label rows, recomputed by a naive pure-Python "
            "point-in-time join from the recorded table versions, equals the training set row "
            "by row.",
            lambda lh, lineage: checks.matches_reference_join(
                lh.read(table),
                labels_at(lh, lineage),
                declaration.lookups,
                tables=lh,
                versions=lineage.table_versions,
                spine_columns=key_columns,
                sample_size=CHECK_SAMPLE_ROWS,
            ),
        ),
        table_check(
            key,
            names.CHECK_SPLIT_TIME_ORDERED,
            f"train < validation < test by {labels.timestamp}, none empty.",
            lambda lh: checks.split_is_time_ordered(
                lh.read(table), labels.timestamp, "split", SPLITS
            ),
        ),
        table_check(
            key,
            names.CHECK_NO_SINGLE_FEATURE_LEAK,
            f"No single model feature predicts the label with ROC AUC >= {LEAK_AUC_THRESHOLD} "
            "on its own (suspected leakage).",
            lambda lh: checks.no_single_feature_leak(
                lh.read(table),
                labels.label,
                declaration.model_features,
                threshold=LEAK_AUC_THRESHOLD,
            ),
            blocking=False,
            severity=dg.AssetCheckSeverity.WARN,
        ),
    ]


def build_training_set_definitions(
    declaration: TrainingSetDeclaration,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """The labels, the training set and every check on them."""
    assets = [build_labels(declaration), build_training_set(declaration)]
    return assets, build_training_set_checks(declaration)
