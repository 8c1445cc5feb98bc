"""The README's "Extending" recipes, each applied as a user would: a feature table, a model and
a check, declared in a few lines and run through the same factories on the tiny scale."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from pyspark.sql import functions as F

from ml_assets import names
from ml_assets.definitions import model_definitions
from ml_assets.defs.checks import feature_table_checks, table_check
from ml_assets.defs.partitions import daily_partitions
from ml_assets.lib.features import registry, user_daily_activity
from ml_assets.lib.features.contracts import Feature, FeatureTableContract
from ml_assets.lib.lakehouse import Column, TableId, TableSpec
from ml_assets.lib.models import catalog
from ml_assets.lib.models.declaration import ModelDeclaration, TrainingSettings
from ml_assets.lib.quality import CheckOutcome
from ml_assets.lib.source import SCALES
from ml_assets.lib.training_sets import checks
from ml_assets.lib.training_sets.declaration import Labels, TrainingSetDeclaration
from ml_assets.lib.training_sets.labels import ACTIVITY_DATE, LabelConfig, outcome_labels
from ml_assets.lib.training_sets.lookups import FeatureLookup
from ml_assets.lib.training_sets.users import (
    ACCOUNT_AGE_DERIVED,
    ENTITY_KEY,
    LABEL_TS,
    USER_LOOKUPS,
    USER_MODEL_FEATURES,
    user_labels_table,
)
from ml_assets.programs.reporting import run_check_results
from ml_assets_tests.defs.conftest import instance_at, materialization_metadata

TINY = SCALES["tiny"]

# -- Recipe: add a model --------------------------------------------------------------------


def compute_return_labels(daily, first_day, last_day, *, history_days):
    """1: the user logs in again in the 7 days after the observation time."""
    return outcome_labels(
        daily,
        first_day,
        last_day,
        LabelConfig(outcome_days=7),
        entity_key=ENTITY_KEY,
        timestamp=LABEL_TS,
        label="returned",
        outcome=F.col("logins") > 0,
        positive_when=True,
        history_days=history_days,
    )


RETURNS = TrainingSetDeclaration(
    table_name="main.training_sets.return_training_set",
    labels=Labels(
        table=user_labels_table(
            "main.training_sets.return_labels",
            "returned",
            "a login in the 7 days after label_ts",
            "Return labels",
        ),
        label="returned",
        compute=compute_return_labels,
        source=user_daily_activity.CONTRACT.table_spec,
        source_date=ACTIVITY_DATE,
        rate_name="return rate",
    ),
    lookups=USER_LOOKUPS,
    derived=(ACCOUNT_AGE_DERIVED,),
    model_features=USER_MODEL_FEATURES,
    description="Return labels joined point-in-time with the user features.",
)
RETURN_MODEL = ModelDeclaration(
    name="return_classifier",
    training_set=RETURNS,
    registered_model="main.models.return_classifier",
    categories={"plan_tier": ("free", "basic", "premium"), "country": ("US", "DE")},
    output="return_probability",
    description="Will the user log in again within a week?",
    stem="returns",
    settings=TrainingSettings(n_trials=2, seed=3, min_test_roc_auc=0.6),
    golden_orderings=(("engaged_premium", "dormant_free"),),
    use_case="Return: will a user log in again within a week, to time reminders.",
    intended_use="Intended use: an example of the recipe; not for decisions.",
)


def test_a_model_recipe_declares_labels_a_training_set_and_a_model_and_registers_it(
    home, resources, monkeypatch
):
    monkeypatch.setitem(catalog.MODELS, RETURN_MODEL.name, RETURN_MODEL)  # the one line
    assets, model_checks = model_definitions(
        RETURN_MODEL, daily_partitions(TINY.start_date, TINY.end_date), lakehouse_monitoring=False
    )
    keys = {k.to_user_string() for a in assets for k in a.keys}
    assert {
        "training_sets/return_labels",
        "training_sets/return_training_set",
        "models/return_classifier",
        "registry/return_classifier_champion",
        "serving/returns_endpoint_config",
        "monitoring/returns_feature_drift",
    } <= keys
    line = [
        a
        for a in assets
        if {k.path[0] for k in a.keys} & {names.TRAINING_SETS, names.MODELS, names.REGISTRY}
    ]
    with instance_at(home) as instance:
        result = dg.materialize(
            line, resources=resources, instance=instance, selection=None, raise_on_error=False
        )
    assert result.success
    failed = [c.check_name for c in run_check_results(result) if not c.passed]
    assert failed == []
    champion = materialization_metadata(result, "registry/return_classifier_champion")
    assert champion["registered_model"] == "main.models.return_classifier"
    assert champion["champion_version"] == "1"
    assert len(model_checks) >= 10  # the training-set, gate, endpoint and drift checks


def test_a_model_declaration_that_does_not_fit_its_training_set_is_refused():
    with pytest.raises(ValueError) as error:
        ModelDeclaration(
            name="Bad Name",
            training_set=RETURNS,
            registered_model="models.bad",
            categories={"not_a_feature": ("a",)},
            output="p",
            description="",
            stem="bad",
            slices=("nowhere",),
            golden_orderings=(("engaged_premium", "no_such_case"),),
        )
    message = str(error.value)
    for problem in (
        "name 'Bad Name': expected a lower-case identifier",
        "registered_model",
        "categories ['not_a_feature'] are not model features",
        "slices ['nowhere'] are not columns of the training set",
        "golden_orderings name unknown cases ['no_such_case']",
        "use_case is empty: the registered model's card and tags state it",
    ):
        assert problem in message


# -- Recipe: add a feature table -------------------------------------------------------------

BASKETS = FeatureTableContract(
    name="main.features.user_baskets",
    entity_keys=("user_id",),
    timestamp_key="feature_ts",
    columns=(
        Column("user_id", "bigint", False, "User"),
        Column("feature_ts", "timestamp", False, "End of the day the row describes"),
    ),
    features=(
        Feature(
            "purchase_days_14d",
            "bigint",
            "Days with a purchase in the 14 days up to feature_ts",
            window="14d",
            default=0,
            constraint=">= 0",
        ),
    ),
    owner="ml-platform",
    refresh_cadence="daily",
    freshness_sla=dt.timedelta(days=2),
    description="Purchase days per user over two weeks.",
)


def compute_baskets(daily):
    day = F.col(ACTIVITY_DATE)
    ends = daily.select(day.alias("end")).distinct()
    joined = daily.join(ends, (day <= F.col("end")) & (day > F.date_sub(F.col("end"), 14)))
    return (
        joined.groupBy("user_id", "end")
        .agg(F.sum((F.col("purchases") > 0).cast("long")).alias("purchase_days_14d"))
        .select(
            "user_id",
            F.to_timestamp(F.date_add(F.col("end"), 1)).alias("feature_ts"),
            "purchase_days_14d",
        )
    )


def test_a_feature_table_recipe_declares_a_contract_and_a_lookup_uses_it(
    home, resources, monkeypatch
):
    monkeypatch.setitem(registry.CONTRACTS, BASKETS.name, BASKETS)  # register the contract
    lakehouse = resources["lakehouse"]
    lakehouse.overwrite(
        BASKETS.table_spec, compute_baskets(lakehouse.read(user_daily_activity.CONTRACT.table_spec))
    )
    key = dg.AssetKey(["features", "user_baskets"])
    contract_checks = feature_table_checks(key, BASKETS, landed_kind="events")
    defs = dg.Definitions(
        assets=[dg.AssetSpec(key)],
        asset_checks=contract_checks,
        jobs=[
            dg.define_asset_job(
                "baskets_checks", selection=dg.AssetSelection.checks_for_assets(key)
            )
        ],
        resources=resources,
    )
    with instance_at(home) as instance:
        result = defs.resolve_job_def("baskets_checks").execute_in_process(instance=instance)
    outcomes = {c.check_name: c.passed for c in run_check_results(result)}
    assert outcomes | {names.CHECK_FRESH: True} == dict.fromkeys(outcomes, True)
    with_baskets = TrainingSetDeclaration(
        table_name="main.training_sets.churn_with_baskets",
        labels=RETURNS.labels,
        lookups=(
            *USER_LOOKUPS,
            FeatureLookup(
                table_name=BASKETS.name,
                lookup_key=ENTITY_KEY,
                timestamp_lookup_key=LABEL_TS,
                lookback_window=dt.timedelta(days=2),
                matched_timestamp_column="user_baskets_feature_ts",
            ),
        ),
        derived=(ACCOUNT_AGE_DERIVED,),
        model_features=(*USER_MODEL_FEATURES, "purchase_days_14d"),
        description="with baskets",
    )
    labels = RETURNS.labels
    lakehouse.overwrite(
        labels.table,
        with_baskets.compute_labels(lakehouse.read(labels.source), TINY.start_date, TINY.end_date),
    )
    training, _ = with_baskets.build(lakehouse)
    written = training.df
    assert "purchase_days_14d" in written.columns
    reference = checks.matches_reference_join(
        written,
        lakehouse.read(labels.table),
        with_baskets.lookups,
        tables=lakehouse,
        versions=training.table_versions,
        spine_columns=list(labels.table.column_names),
        sample_size=50,
    )
    assert reference.passed, reference.description


# -- Recipe: add a check ---------------------------------------------------------------------


def label_rate_between(df, label: str, low: float, high: float) -> CheckOutcome:
    """A rule in lib: the share of positive labels stays in a band."""
    rate = df.agg(F.avg(label)).first()[0]
    return CheckOutcome(
        low <= rate <= high,
        f"label rate {rate:.3f} {'within' if low <= rate <= high else 'outside'} [{low}, {high}]",
        {"rate": round(rate, 4), "low": low, "high": high},
    )


def test_a_check_recipe_wraps_a_rule_and_fails_on_bad_data(ingested):
    home, _ = ingested
    key = dg.AssetKey(["training_sets", "purchase_labels"])
    spec = TableSpec(
        name=TableId.parse("main.training_sets.purchase_labels"),
        columns=(Column("purchased", "int"),),
    )

    def outcome_of(low: float, high: float) -> dg.AssetCheckEvaluation:
        check = table_check(
            key,
            "purchase_rate_in_band",
            f"The purchase rate is within [{low}, {high}].",
            lambda lh: label_rate_between(lh.read(spec), "purchased", low, high),
        )
        from ml_assets.deployments import build_resources
        from ml_assets_tests.defs.conftest import tiny_settings

        defs = dg.Definitions(
            assets=[dg.AssetSpec(key)],
            asset_checks=[check],
            jobs=[dg.define_asset_job("band", selection=dg.AssetSelection.checks(check))],
            resources=build_resources(tiny_settings(home)),
        )
        with instance_at(home) as instance:
            result = defs.resolve_job_def("band").execute_in_process(
                instance=instance,
                raise_on_error=False,  # a failed blocking check fails the run
            )
        [evaluation] = run_check_results(result)
        return evaluation

    good = outcome_of(0.01, 0.99)
    assert good.passed and good.metadata["rate"].value > 0
    bad = outcome_of(0.99, 1.0)
    assert not bad.passed and "outside [0.99, 1.0]" in bad.description
    assert bad.severity == dg.AssetCheckSeverity.ERROR
