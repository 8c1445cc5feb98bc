"""The second model, purchase propensity, added by declaration only: its labels and training
set (``lib/training_sets/purchase.py``), its model (``lib/models/purchase_propensity.py``) and
one line in ``lib/models/catalog.py``. The same factories give it the whole lifecycle, and the
main job runs it end to end beside churn."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import mlflow
import pandas as pd
import pytest
from starlette.testclient import TestClient

from ml_assets import names
from ml_assets.definitions import build_definitions
from ml_assets.defs.models.assets import training_config
from ml_assets.defs.registry.assets import gate_config
from ml_assets.defs.serving.assets import endpoint_config
from ml_assets.deployments import build_resources, current_settings
from ml_assets.lib.models.catalog import MODELS
from ml_assets.lib.models.golden import golden_examples
from ml_assets.lib.models.purchase_propensity import PURCHASE_PROPENSITY as MODEL
from ml_assets.lib.serving.batch import predictions_table
from ml_assets.lib.training_sets.purchase import compute_purchase_labels
from ml_assets.programs.gateway import build_app, gateway_for
from ml_assets.programs.reporting import run_check_results
from ml_assets.resources.mlflow import LocalMlflow
from ml_assets_tests.defs.conftest import materialization_metadata, tiny_settings

LINE = {
    "training_sets/purchase_labels",
    "training_sets/purchase_training_set",
    "models/purchase_propensity",
    "registry/purchase_propensity_version",
    "registry/purchase_propensity_champion",
    "serving/purchase_endpoint_config",
    "serving/purchase_predictions",
    "monitoring/purchase_feature_drift",
    "monitoring/purchase_prediction_drift",
}


def test_it_is_registered_by_one_line_and_gets_the_whole_line_and_its_automation():
    assert MODELS[MODEL.name] is MODEL
    defs = build_definitions(current_settings())
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} >= LINE
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    for expected in (
        ("training_sets/purchase_labels", names.CHECK_VALUES_VALID),
        ("training_sets/purchase_training_set", names.CHECK_NO_FUTURE_FEATURES),
        ("training_sets/purchase_training_set", names.CHECK_MATCHES_REFERENCE),
        ("models/purchase_propensity", names.CHECK_METRICS_MEET_THRESHOLDS),
        ("registry/purchase_propensity_champion", names.CHECK_GATE_PASSED),
        ("registry/purchase_propensity_champion", names.CHECK_CHAMPION_CONSISTENT),
        ("serving/purchase_endpoint_config", names.CHECK_SIGNATURE_SERVABLE),
        ("monitoring/purchase_feature_drift", names.CHECK_FEATURE_DRIFT),
        ("monitoring/purchase_prediction_drift", names.CHECK_PREDICTION_DRIFT),
    ):
        assert expected in checks, expected
    for sensor in ("purchase_endpoint_config_sensor", "purchase_drift_retraining_sensor"):
        assert defs.get_sensor_def(sensor)
    retraining = defs.resolve_job_def(names.RETRAINING_JOB).asset_layer.selected_asset_keys
    assert dg.AssetKey(MODEL.champion_key) in retraining
    # its launchpad defaults are its own declaration's: the gate's ROC AUC floor, the canary
    gate = gate_config(MODEL)()
    assert (gate.thresholds[0].metric, gate.thresholds[0].threshold) == ("roc_auc", 0.65)
    assert gate_config(MODELS["churn_classifier"])().thresholds[0].threshold == 0.75
    assert endpoint_config(MODEL)().canary_percentage == MODEL.canary_percentage
    assert training_config(MODEL)().min_test_roc_auc == MODEL.settings.min_test_roc_auc


def test_the_main_job_runs_it_end_to_end_and_every_check_passes(ingested):
    home, result = ingested
    failed = [
        (c.asset_key.to_user_string(), c.check_name)
        for c in run_check_results(result)
        if c.asset_key.to_user_string() in LINE
        and not c.passed
        and c.severity == dg.AssetCheckSeverity.ERROR
    ]
    assert failed == []
    labels = materialization_metadata(result, "training_sets/purchase_labels")
    assert 0.05 < labels["purchase_rate"] < 0.95 and labels["observation_times"] >= 3
    trained = materialization_metadata(result, "models/purchase_propensity")
    assert trained["n_trials"] == str(MODEL.settings.n_trials)
    tracking = LocalMlflow(home=str(home))
    client = tracking.client()
    parent = client.get_run(trained["mlflow_run_id"])
    assert parent.data.tags[names.TAG_TRAINING_SET] == MODEL.training_set.table_name
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == MODEL.settings.n_trials
    champion = materialization_metadata(result, "registry/purchase_propensity_champion")
    assert champion["registered_model"] == MODEL.registered_model
    assert champion["champion_version"] == "1"
    mlflow.set_tracking_uri(tracking.tracking_uri())
    mlflow.set_registry_uri(tracking.registry_uri())
    served = mlflow.pyfunc.load_model(f"models:/{MODEL.registered_model}@champion")
    golden = golden_examples(MODEL.encoding)
    scores = pd.Series(served.predict(golden).to_numpy(), index=golden.index)
    assert scores["engaged_premium"] > scores["dormant_free"]  # its own declared ordering
    assert served.metadata.get_output_schema().input_names() == [MODEL.output]
    predictions = materialization_metadata(result, "serving/purchase_predictions")
    assert predictions["model"] == f"{MODEL.registered_model} v1"
    lakehouse = build_resources(tiny_settings(home))["lakehouse"]
    rows = lakehouse.read(predictions_table(MODEL)).toPandas()
    newest = rows[rows.scored_at == rows.scored_at.max()]
    assert len(newest) == predictions["users_scored"] and rows[MODEL.output].between(0, 1).all()
    # and the scoring days from its test window on, one batch a day
    assert rows.scored_at.nunique() == predictions["scoring_times"] > 1
    assert len(rows) == predictions["rows_scored"] == predictions["dagster/row_count"]
    drift = materialization_metadata(result, "monitoring/purchase_feature_drift")
    assert drift["columns_compared"] >= 1


def test_its_gateway_route_scores_users_and_is_its_own_endpoint(ingested):
    home, _ = ingested
    settings = current_settings({"ML_ASSETS_HOME": str(home), "ML_ASSETS_SCALE": "tiny"})
    gateway = gateway_for(settings, MODEL.endpoint)
    gateway.reload_if_changed()
    client = TestClient(build_app(gateway))
    answer = client.post(
        f"/serving-endpoints/{MODEL.endpoint}/invocations",
        json={"dataframe_records": [{"user_id": 7}, {"user_id": 8}]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["served-model-name"] == f"{MODEL.endpoint}-1"
    assert all(0 < p < 1 for p in answer.json()["predictions"])
    churn = client.post(
        "/serving-endpoints/churn_classifier/invocations", json={"dataframe_records": []}
    )
    assert churn.status_code == 404  # one endpoint per gateway, as one per serving endpoint
    with pytest.raises(ValueError, match=r"No declared model serves an endpoint named 'nope'"):
        gateway_for(settings, "nope")


DAILY = "user_id bigint, activity_date date, logins bigint, purchases bigint"


def test_purchase_labels_look_14_days_ahead_for_active_users(spark):
    d = dt.date
    daily = [
        (1, d(2026, 1, 2), 1, 0),  # active before Jan 5, buys on Jan 18 (inside Jan 5 + 14)
        (1, d(2026, 1, 18), 0, 1),
        (2, d(2026, 1, 3), 1, 0),  # active, buys on Jan 19: the first day after the window
        (2, d(2026, 1, 19), 0, 1),
        (3, d(2026, 1, 5), 0, 1),  # first active (and buying) on Jan 5: not observed then
    ]
    labels = compute_purchase_labels(
        spark.createDataFrame(daily, DAILY), d(2026, 1, 1), d(2026, 1, 31)
    )
    got = {(r.user_id, r.label_ts.date()): r.purchased for r in labels.collect()}
    assert got[(1, d(2026, 1, 5))] == 1
    assert got[(2, d(2026, 1, 5))] == 0
    assert (3, d(2026, 1, 5)) not in got
    assert got[(3, d(2026, 1, 12))] == 0  # observed from Jan 12; its purchase was before
    assert got[(1, d(2026, 1, 12))] == 1  # Jan 18 is inside Jan 12 + 14 days too
    assert max(t for _, t in got) == d(2026, 1, 12)  # + 13 days <= Jan 31; Jan 19 does not fit
