"""The serving stage on the tiny scale: the endpoint config and its checks, batch predictions,
and the gateway (in process through Starlette's test client, and as the real `make serve`
process on a free port)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from starlette.testclient import TestClient

from ml_assets import names
from ml_assets.deployments import build_resources, current_settings
from ml_assets.lib.features import user_activity
from ml_assets.lib.models.catalog import MODELS
from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.lib.serving.api import InvocationResponse, record_model, request_model
from ml_assets.lib.serving.batch import predictions_table
from ml_assets.lib.serving.inference_log import inference_log_table, pending_files, read_files
from ml_assets.lib.serving.user_features import REQUEST_KEY_TYPES
from ml_assets.lib.training_sets.users import ENTITY_KEY
from ml_assets.programs.gateway import build_app, gateway_for
from ml_assets.programs.replay import (
    MALFORMED_EVERY,
    gateway_process,
    replay,
    replay_days,
    scoring_days,
    wait_for,
)
from ml_assets.programs.reporting import run_check_results
from ml_assets.programs.rollout import stage_challengers
from ml_assets.programs.run import (
    REPLAYED_DAYS,
    REPLAYED_REQUESTS,
    inference_log_summary,
    run_job,
    serve_traffic,
)
from ml_assets_tests.churn import (
    PREDICTIONS,
    churn_classifier_version,
    churn_endpoint_config,
    churn_inference_log,
    churn_predictions,
)
from ml_assets_tests.defs.conftest import (
    evaluate_checks,
    instance_at,
    materialization_metadata,
    tiny_settings,
)
from ml_assets_tests.gateway_process import get_json, running_gateway

# Replays `make run`'s serving stage and starts gateways (four minutes in all): handed out first.
pytestmark = pytest.mark.whole_graph

CONFIG = "serving/churn_endpoint_config"
INVOKE = f"/serving-endpoints/{CHURN_CLASSIFIER.endpoint}/invocations"
INFERENCE_LOG = inference_log_table(CHURN_CLASSIFIER.inference_log_table, CHURN_CLASSIFIER.endpoint)


def materialize(home, resources, assets, config=None) -> dg.ExecuteInProcessResult:
    with instance_at(home) as instance:
        return dg.materialize(
            assets, resources=resources, instance=instance, run_config=config or {}
        )


def config_path(home: Path) -> Path:
    return home / "serving" / f"{CHURN_CLASSIFIER.endpoint}.json"


def client_for(home: Path, **settings) -> tuple[TestClient, object]:
    gateway = gateway_for(
        current_settings({"ML_ASSETS_HOME": str(home), "ML_ASSETS_SCALE": "tiny", **settings})
    )
    gateway.reload_if_changed()
    return TestClient(build_app(gateway)), gateway


def test_the_champion_alone_takes_all_traffic_and_every_config_check_passes(ingested):
    home, result = ingested
    metadata = materialization_metadata(result, CONFIG)
    assert metadata["routes"] == "churn_classifier-1 100%"
    deployed = json.loads(config_path(home).read_text())
    assert deployed["config"]["served_entities"][0]["entity_version"] == "1"
    checks = {
        c.check_name: c.passed
        for c in run_check_results(result)
        if c.asset_key.to_user_string() == CONFIG
    }
    assert checks == {
        "routes_sum_to_100": True,
        "served_entities_ready": True,
        "signatures_match_online_features": True,
    }


def test_a_pending_challenger_gets_a_canary_share(home, resources):
    materialize(home, resources, [churn_classifier_version])  # v2, alias challenger
    result = materialize(
        home,
        resources,
        [churn_endpoint_config],
        {"ops": {"serving__churn_endpoint_config": {"config": {"canary_percentage": 20}}}},
    )
    assert materialization_metadata(result, CONFIG)["routes"] == (
        "churn_classifier-1 80%, churn_classifier-2 20%"
    )
    client, _ = client_for(home)
    answered = [
        client.post(
            INVOKE, json={"dataframe_records": [{"user_id": 8}]}, headers={"X-Request-Id": f"r{i}"}
        ).json()["served_model_name"]
        for i in range(200)
    ]
    canary = answered.count("churn_classifier-2")
    assert 20 <= canary <= 60  # ~20 % of 200 request ids
    again = client.post(
        INVOKE, json={"dataframe_records": [{"user_id": 8}]}, headers={"X-Request-Id": "r3"}
    )
    assert again.json()["served_model_name"] == answered[3]  # the same id, the same entity


def test_config_checks_fail_on_a_hand_edited_config(home):
    path = config_path(home)
    body = json.loads(path.read_text())
    body["config"]["traffic_config"]["routes"][0]["traffic_percentage"] = 90
    body["config"]["served_entities"][0]["entity_version"] = "7"
    path.write_text(json.dumps(body))
    checks = evaluate_checks(home, CONFIG)
    assert not checks["routes_sum_to_100"].passed
    assert "traffic percentages sum to 90, expected 100" in checks["routes_sum_to_100"].description
    assert not checks["served_entities_ready"].passed
    assert "churn_classifier-1: main.models.churn_classifier v7" in (
        checks["served_entities_ready"].description
    )
    body["config"]["served_entities"][0]["workload"] = "XL"
    path.write_text(json.dumps(body))
    check = evaluate_checks(home, CONFIG)["routes_sum_to_100"]
    assert not check.passed and "Extra inputs are not permitted" in check.description


def test_a_served_model_needing_a_feature_the_gateway_lacks_fails_the_signature_check(home):
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from ml_assets.resources.mlflow import LocalMlflow

    client = LocalMlflow(home=str(home)).client()

    class Needs(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return pd.Series(0.5, index=model_input.index)

    frame = pd.DataFrame({"events_7d": [1.0], "favourite_colour": ["red"]})
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Needs(),
            signature=infer_signature(frame, [0.5]),
            pip_requirements=["mlflow"],
        )
    version = client.create_model_version(
        names.CHURN_MODEL_NAME, f"models:/{info.model_id}", run.info.run_id, model_id=info.model_id
    )
    path = config_path(home)
    body = json.loads(path.read_text())
    body["config"]["served_entities"][0]["entity_version"] = str(version.version)
    path.write_text(json.dumps(body))
    check = evaluate_checks(home, CONFIG)["signatures_match_online_features"]
    assert not check.passed
    assert "churn_classifier-1 needs 'favourite_colour', which neither the online features" in (
        check.description
    )


def test_batch_predictions_name_the_model_and_feature_versions_and_rerun_idempotently(
    ingested, home, resources
):
    _, result = ingested
    metadata = materialization_metadata(result, "serving/churn_predictions")
    lakehouse = resources["lakehouse"]
    activity = lakehouse.read(user_activity.CONTRACT.table_spec).toPandas()
    newest = activity[activity.feature_ts == activity.feature_ts.max()]
    eligible = newest[newest.events_30d > 0]  # the label's population: active in 30 days
    assert metadata["users_scored"] == len(eligible) > 200
    assert len(newest) > len(eligible)  # users idle for 30 to 90 days are not scored
    assert metadata["model"] == f"{names.CHURN_MODEL_NAME} v1"
    rows = lakehouse.read(PREDICTIONS).toPandas()
    # the scoring days: every feature time from the champion's test window on, one batch each
    days = sorted(rows.scored_at.unique())
    assert len(days) == metadata["scoring_times"] > 20 and len(rows) == metadata["rows_scored"]
    assert str(pd.Timestamp(days[0]).date()) == metadata["scored_since"]
    assert metadata["dagster/row_count"] == len(rows)
    per_day = rows.groupby("scored_at").user_id.count()
    assert (per_day > 150).all()  # each day's eligible users
    assert set(rows["model_version"]) == {1}
    assert set(rows["user_activity_version"]) == {1} and rows["user_profile_version"].nunique() == 1
    assert rows["churn_probability"].between(0, 1).all()
    before = lakehouse.version(PREDICTIONS)
    again = materialize(home, resources, [churn_predictions])
    assert materialization_metadata(again, "serving/churn_predictions")["rows_written"] == 0
    assert lakehouse.version(PREDICTIONS) == before  # nothing changed, nothing committed
    assert lakehouse.read(PREDICTIONS).count() == len(rows)


def test_the_gateway_answers_every_invocation_format_and_rejects_bad_input_clearly(ingested):
    client, _ = client_for(ingested[0])
    records = client.post(INVOKE, json={"dataframe_records": [{"user_id": 8}, {"user_id": 10**9}]})
    assert (
        records.status_code == 200 and records.headers["served-model-name"] == "churn_classifier-1"
    )
    known, unknown = records.json()["predictions"]
    assert 0 < known < 1 and 0 < unknown < 1  # an unknown user is scored on the defaults
    assert records.json()["lookup_missed"] == [False, True]  # ... and the answer says so
    assert records.json()["lookup_missed_tables"] == [
        [],
        ["main.features.user_activity", "main.features.user_profile"],
    ]
    split = client.post(INVOKE, json={"dataframe_split": {"columns": ["user_id"], "data": [[8]]}})
    inputs = client.post(INVOKE, json={"inputs": {"user_id": [8]}})
    assert split.json()["predictions"] == inputs.json()["predictions"] == [known]
    engaged = {"events_7d": 90, "logins_7d": 7, "sessions_7d": 7, "days_since_last_login": 0}
    overridden = client.post(
        INVOKE, json={"dataframe_records": [{"user_id": 8, **engaged}]}
    ).json()["predictions"][0]
    assert overridden != known  # a request may override features
    cases = {
        b"{nope": (400, "The body is not valid JSON"),
        json.dumps({"records": []}).encode(): (400, "Expected exactly one of"),
        json.dumps({"dataframe_records": [{"user": 7}]}).encode(): (
            400,
            "missing column(s) ['user_id']",
        ),
        json.dumps({"dataframe_records": [{"user_id": "7"}]}).encode(): (
            400,
            "user_id must be an integer",
        ),
        json.dumps({"dataframe_records": [{"user_id": 8, "country": 3}]}).encode(): (
            400,
            "country must be a string",
        ),
        json.dumps({"dataframe_records": [{"user_id": 8}] * 1001}).encode(): (413, "at most 1000"),
    }
    for body, (status, message) in cases.items():
        answer = client.post(INVOKE, content=body)
        assert answer.status_code == status, answer.text
        assert message in answer.json()["message"]
    other = client.post("/serving-endpoints/other/invocations", json={})
    assert other.status_code == 404 and other.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["served_entities"] == {"churn_classifier-1": 100}


def test_with_a_token_set_everything_but_health_needs_it_and_reveals_nothing(ingested):
    client, _ = client_for(ingested[0], ML_ASSETS_SERVING_TOKEN="s3cret")
    body = {"dataframe_records": [{"user_id": 8}]}
    for method, path in [
        ("POST", INVOKE),
        ("GET", "/ready"),
        ("POST", "/serving-endpoints/other/invocations"),
        ("GET", "/no-such-page"),
    ]:
        answer = client.request(method, path, json=body)
        assert answer.status_code == 401, path
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert CHURN_CLASSIFIER.endpoint not in answer.text and "churn" not in answer.text
    assert client.get("/health").json() == {"status": "ok"}
    for header in ("Bearer s3cret", "bearer s3cret", "BEARER s3cret", " Bearer  s3cret "):
        answer = client.post(INVOKE, json=body, headers={"Authorization": header})
        assert answer.status_code == 200, header
    for header in ("Bearer wrong", "Basic s3cret", "s3cret", "Bearers3cret", "Bearer s3cret x"):
        answer = client.post(INVOKE, json=body, headers={"Authorization": header})
        assert answer.status_code == 401, header
    assert client.get("/ready", headers={"Authorization": "bearer s3cret"}).json()["ready"]


def test_client_mistakes_are_400_naming_the_field_never_500(ingested):
    client, _ = client_for(ingested[0])
    cases = {
        b'{"dataframe_records": [{"user_id": 1000000000000000000000000000000}]}': (
            "user_id must be an integer from -9223372036854775808 to 9223372036854775807"
        ),
        json.dumps({"dataframe_records": [{"user_id": 2**63}]}).encode(): "9223372036854775807",
        json.dumps({"dataframe_records": [{"user_id": 1e20}]}).encode(): "user_id must be",
        json.dumps({"dataframe_records": [{"user_id": 8, "events_7d": [1]}]}).encode(): (
            "events_7d must be a number"
        ),
        b'{"dataframe_split": {"columns": 3, "data": [[8]]}}': "dataframe_split.columns",
        b'{"dataframe_split": {"columns": "user_id", "data": [[8]]}}': "dataframe_split.columns",
        b"[" * 100_000 + b"]" * 100_000: "nested too deeply",
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000: "nested too deeply",
    }
    for body, message in cases.items():
        answer = client.post(INVOKE, content=body)
        assert answer.status_code == 400, (body[:60], answer.text)
        assert message in answer.json()["message"], answer.json()


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_parsed(ingested):
    client, gateway = client_for(ingested[0], ML_ASSETS_SERVING_MAX_BODY_BYTES="2048")
    assert gateway.max_body_bytes == 2048
    too_big = json.dumps(
        {"dataframe_records": [{"user_id": 8, "plan_tier": "p" * 1000}] * 3}
    ).encode()
    declared = client.post(INVOKE, content=too_big)
    assert declared.status_code == 413 and declared.json()["error_code"] == "REQUEST_TOO_LARGE"
    assert "larger than 2048 bytes" in declared.json()["message"]

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        yield b'{"dataframe_records": ['
        for _ in range(300):  # 4.5 kB
            yield b'{"user_id": 8},'
        yield b'{"user_id": 8}]}'

    streamed = client.post(INVOKE, content=chunks())
    assert streamed.status_code == 413
    small = client.post(INVOKE, json={"dataframe_records": [{"user_id": 8}]})
    assert small.status_code == 200


def test_the_watcher_sees_a_rewrite_that_keeps_the_modification_time(home):
    client, gateway = client_for(home)
    path = config_path(home)
    good = path.read_bytes()
    path.write_bytes(b"{half a config")
    stamp = path.stat().st_mtime_ns
    assert not gateway.reload_if_changed() and "half a config" not in str(gateway.deployment)
    assert gateway.last_error is not None
    path.write_bytes(good)  # the writer finishes within the same clock tick
    os.utime(path, ns=(stamp, stamp))
    assert gateway.reload_if_changed() and gateway.last_error is None


def test_a_bad_config_is_not_loaded_and_the_old_models_keep_serving(home, resources):
    client, gateway = client_for(home)
    body = {"dataframe_records": [{"user_id": 8}]}
    before = client.post(INVOKE, json=body).json()
    path = config_path(home)
    good = path.read_text()
    broken = json.loads(good)
    broken["config"]["served_entities"][0]["entity_version"] = "99"
    path.write_text(json.dumps(broken))
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert not gateway.reload_if_changed()
    assert "99" in gateway.last_error
    assert not gateway.reload_if_changed()  # the same broken file is not retried every second
    assert client.post(INVOKE, json=body).json() == before  # still the old models
    assert client.get("/ready").json()["last_reload_error"] == gateway.last_error
    materialize(home, resources, [churn_classifier_version])
    materialize(home, resources, [churn_endpoint_config])  # a valid canary config
    os.utime(path, (time.time() + 10, time.time() + 10))
    assert gateway.reload_if_changed() and gateway.last_error is None
    assert set(client.get("/ready").json()["served_entities"]) == {
        "churn_classifier-1",
        "churn_classifier-2",
    }


def _invoke(port: int, user_id: int) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{INVOKE}",
        data=json.dumps({"dataframe_records": [{"user_id": user_id}]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def test_make_serve_answers_over_http_and_reloads_a_new_config_without_dropping_requests(
    home, resources
):
    log_dir = home / "serving" / "inference_logs" / CHURN_CLASSIFIER.endpoint
    shutil.rmtree(log_dir, ignore_errors=True)  # other tests' gateways logged to the fixture
    with running_gateway(home) as gateway:
        port = gateway.port
        assert _invoke(port, 7) == (200, _invoke(port, 7)[1])
        assert _invoke(port, 7)[1]["served_model_name"] == "churn_classifier-1"

        statuses: list[int] = []
        done = threading.Event()

        def keep_asking() -> None:
            while not done.is_set():
                statuses.append(_invoke(port, len(statuses) % 400)[0])

        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:  # a challenger appears: the config gains a canary while requests keep coming
            materialize(home, resources, [churn_classifier_version])
            materialize(home, resources, [churn_endpoint_config])
            deadline = time.monotonic() + 60
            while set(get_json(port, "/ready")["served_entities"]) != {
                "churn_classifier-1",
                "churn_classifier-2",
            }:
                assert time.monotonic() < deadline, "the new config was not picked up"
                time.sleep(0.5)
            time.sleep(1)
        finally:
            done.set()
            asker.join(timeout=60)
        assert len(statuses) > 20 and set(statuses) == {200}  # none dropped during the reload
    # SIGTERM is a clean shutdown: every answer was in the inference log when the process ended
    logged = read_files(pending_files(log_dir))
    assert len({r["request_id"] for r in logged.rows}) == 3 + len(statuses)
    assert {r["served_entity_name"] for r in logged.rows} == {
        "churn_classifier-1",
        "churn_classifier-2",
    }


def test_every_answer_is_logged_off_the_request_path_and_ingested_into_delta(home, resources):
    shutil.rmtree(home / "serving" / "inference_logs", ignore_errors=True)
    client, gateway = client_for(home)
    overridden = {"user_id": 10**9, "events_7d": 3}
    ok = client.post(
        INVOKE,
        json={"dataframe_records": [{"user_id": 8}, overridden]},
        headers={"X-Request-Id": "client-1"},
    )
    refused = client.post(INVOKE, json={"dataframe_records": [{"user_id": "8"}]})
    assert ok.status_code == 200 and refused.status_code == 400
    assert client.get("/ready").json()["inference_log"]["dropped"] == 0
    gateway.inference_log.close()  # what the server's shutdown does
    result = materialize(home, resources, [churn_inference_log])
    meta = materialization_metadata(result, "serving/churn_inference_log")
    assert meta["rows_ingested"] == 3 and meta["requests_total"] == 2
    assert meta["requests_per_status"] == {"200": 1, "400": 1}
    assert meta["dagster/table_name"] == "main.serving.churn_classifier_inference_log"
    rows = resources["lakehouse"].read(INFERENCE_LOG).toPandas()
    scored = rows[rows.status_code == 200].sort_values("row_index")
    assert scored.user_id.tolist() == [8, 10**9]
    assert scored.prediction.tolist() == ok.json()["predictions"]
    assert scored.lookup_missed.tolist() == [False, True]
    assert json.loads(scored.features.iloc[1])["events_7d"] == 3  # as the model saw it
    assert set(json.loads(scored.features.iloc[0])) == set(CHURN_CLASSIFIER.encoding.columns)
    assert set(scored.client_request_id) == {"client-1"}
    assert scored.request_id.iloc[0] == ok.headers["x-request-id"]  # the caller's join key
    assert set(scored.model_version) == {"1"} and set(scored.served_entity_name) == {
        ok.headers["served-model-name"]
    }
    (bad,) = rows[rows.status_code == 400].itertuples()
    assert "user_id" in bad.error and pd.isna(bad.user_id) and pd.isna(bad.prediction)
    # the files moved to _ingested/: a second run adds nothing and loses nothing
    again = materialize(home, resources, [churn_inference_log])
    assert materialization_metadata(again, "serving/churn_inference_log")["rows_ingested"] == 0
    assert resources["lakehouse"].read(INFERENCE_LOG).count() == 3


def test_a_failure_of_the_gateway_itself_is_a_logged_500_that_shows_no_secret(
    home, monkeypatch, caplog
):
    """The online store failing mid-request is the server's fault: a 500 in the serving API's
    error shape, the answer logged like any other, the store's URL password in neither."""
    shutil.rmtree(home / "serving" / "inference_logs", ignore_errors=True)
    client, gateway = client_for(home)

    monkeypatch.setattr(gateway, "store", UnreachableStore(gateway.store))
    with caplog.at_level(logging.ERROR, logger="ml_assets.programs.gateway"):
        failed = client.post(INVOKE, json={"dataframe_records": [{"user_id": 8}]})
    assert failed.status_code == 500
    body = failed.json()
    assert body["error_code"] == "INTERNAL_ERROR"
    assert failed.headers["x-request-id"] in body["message"]  # what to look for in the log
    assert "hunter2" not in failed.text and "postgresql" not in failed.text
    assert "ConnectionError" in caplog.text and "app:***@db" in caplog.text
    assert "hunter2" not in caplog.text
    monkeypatch.undo()
    assert client.post(INVOKE, json={"dataframe_records": [{"user_id": 8}]}).status_code == 200
    gateway.inference_log.close()
    logged = read_files(pending_files(gateway.inference_log.root))
    by_status = {r["status_code"]: r for r in logged.rows}
    assert sorted(by_status) == [200, 500]
    assert by_status[500]["request_id"] == failed.headers["x-request-id"]
    assert "ConnectionError" in by_status[500]["error"]
    assert "hunter2" not in by_status[500]["error"]


def test_settings_refuse_an_unknown_clock(tmp_path):
    from ml_assets.deployments import DeploymentError

    with pytest.raises(DeploymentError, match="ML_ASSETS_SERVING_CLOCK='now'"):
        current_settings({"ML_ASSETS_HOME": str(tmp_path), "ML_ASSETS_SERVING_CLOCK": "now"})
    assert tiny_settings(tmp_path).serving_clock == "data"


def test_the_gateway_describes_itself_at_openapi_json_and_a_human_page(ingested):
    client, gateway = client_for(ingested[0])
    document = client.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    operation = document["paths"][INVOKE]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InvocationRequest"
    }
    assert {"200", "400", "401", "404", "413", "503"} <= set(operation["responses"])
    schemas = document["components"]["schemas"]
    record = schemas["InvocationRecord"]
    assert record["required"] == ["user_id"] and record["additionalProperties"] is False
    signature = gateway.deployment.inputs["churn_classifier-1"]
    assert set(record["properties"]) == {"user_id", *signature}  # the served inputs, typed
    assert {"type": "number"} in record["properties"]["events_7d"]["anyOf"]
    assert {"type": "string"} in record["properties"]["country"]["anyOf"]
    assert set(schemas["InvocationResponse"]["required"]) == {
        "predictions",
        "served_model_name",
        "lookup_missed",
        "lookup_missed_tables",
    }
    # the document cannot drift from the code: what the parser accepts validates against
    # the request model it is generated from, and the answer is built by the response model
    model = request_model(record_model(REQUEST_KEY_TYPES, signature), gateway.max_rows)
    accepted = [
        {"dataframe_records": [{"user_id": 8}, {"user_id": 8, "events_7d": 3.0}]},
        {"dataframe_split": {"columns": ["user_id"], "data": [[8]]}},
        {"inputs": {"user_id": [7, 8]}},
        {"inputs": [{"user_id": 8, "country": "DE"}], "params": {}},
    ]
    for body in accepted:
        assert client.post(INVOKE, json=body).status_code == 200, body
        InvocationResponse.model_validate(client.post(INVOKE, json=body).json())
        model.model_validate(body)
    refused = [
        {"records": []},
        {"dataframe_records": [{"user_id": 8}], "inputs": [{"user_id": 8}]},
        {"dataframe_records": [{"user": 7}]},
        {"dataframe_records": []},
        {"dataframe_records": [{"user_id": 8}] * 1001},
    ]
    for body in refused:
        assert client.post(INVOKE, json=body).status_code in (400, 413), body
        with pytest.raises(ValueError):
            model.model_validate(body)
    # the human page: what it serves, how to call it, where the document is
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    for fact in (
        "<title>churn_classifier: ml_assets serving gateway</title>",
        CHURN_CLASSIFIER.use_case,
        "<td>churn_classifier-1</td><td>main.models.churn_classifier</td><td>1</td><td>100 %</td>",
        f"/serving-endpoints/{CHURN_CLASSIFIER.endpoint}/invocations",
        'href="/openapi.json"',
        "lookup_missed",
    ):
        assert fact in text, fact
    with_token, _ = client_for(ingested[0], ML_ASSETS_SERVING_TOKEN="s3cret")
    for path in ("/", "/openapi.json"):  # they name the endpoint: behind the token
        assert with_token.get(path).status_code == 401
    document = with_token.get("/openapi.json", headers={"Authorization": "Bearer s3cret"}).json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_a_batch_with_a_lost_user_and_an_impossible_score_fails_predictions_valid(
    ingested, home, resources
):
    _, result = ingested
    (passed,) = [
        c
        for c in run_check_results(result)
        if c.asset_key.to_user_string() == "serving/churn_predictions"
        and c.check_name == names.CHECK_PREDICTIONS_VALID
    ]
    assert passed.passed, passed.description
    assert "one per eligible user, one model version" in passed.description
    lakehouse = resources["lakehouse"]
    rows = lakehouse.read(PREDICTIONS)
    newest = F.col("scored_at") == rows.agg(F.max("scored_at")).first()[0]
    picked = rows.where(newest).select(ENTITY_KEY).orderBy(ENTITY_KEY).limit(2).collect()
    first, second = [r[ENTITY_KEY] for r in picked]
    in_newest = newest & (F.col(ENTITY_KEY) == second)
    broken = rows.where(~(newest & (F.col(ENTITY_KEY) == first))).withColumn(
        CHURN_CLASSIFIER.output,
        F.when(in_newest, F.lit(1.5)).otherwise(F.col(CHURN_CLASSIFIER.output)),
    )
    lakehouse.overwrite(PREDICTIONS, broken)
    failed = evaluate_checks(home, "serving/churn_predictions")[names.CHECK_PREDICTIONS_VALID]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert "1 score(s) null, NaN or outside [0, 1]" in failed.description
    eligible = failed.metadata["eligible_users"].value
    assert f"{eligible - 1} users scored, {eligible} eligible at" in failed.description


def test_make_run_stages_a_canary_and_a_shadow_and_replays_the_scoring_days(home, resources):
    """What make run does after the job: a reseeded challenger per model (churn's a canary,
    purchase's a shadow); each endpoint's gateway started as a process on a replay store,
    sent seeded traffic day by day over the scoring days, stopped by SIGTERM to its process
    group; the inference-log job ingesting what it wrote (every shadow copy included), and
    the canary verdicts judging the logged arms."""
    shutil.rmtree(home / "serving" / "inference_logs", ignore_errors=True)
    settings = tiny_settings(home)
    with instance_at(home) as instance:
        staged = stage_challengers(settings, instance)
        assert staged.result.success and staged.ok and not staged.refused
        lines, result = serve_traffic(settings, instance)
        judged = run_job(settings, instance, names.MODEL_QUALITY_JOB)
    assert result.success and judged.success
    assert "challenger v2 (seed 8) served as a 10 % canary beside champion v1" in staged.lines[0]
    assert "challenger v2 (seed 12) served as a shadow (0 %) beside champion v1" in staged.lines[1]
    sent = REPLAYED_REQUESTS["tiny"]
    malformed = sent // MALFORMED_EVERY
    lakehouse = resources["lakehouse"]
    for model, line in zip(MODELS.values(), lines, strict=True):
        days = replay_days(scoring_days(predictions_table(model), lakehouse), REPLAYED_DAYS["tiny"])
        assert len(days) == REPLAYED_DAYS["tiny"]
        assert line.startswith(f"{model.endpoint}: {sent} requests over {len(days)} days")
        meta = materialization_metadata(result, "/".join(model.inference_log_key))
        assert meta["requests_per_status"] == {"200": sent - malformed, "400": malformed}
        assert f"{meta['rows_ingested']} rows ingested" in inference_log_summary(result, model)
        logged = lakehouse.read(inference_log_table(model.inference_log_table, model.endpoint))
        rows = logged.toPandas()
        answered = rows[(rows.status_code == 200) & ~rows.shadow]
        # each answer's features were looked up as of its replayed day, the store as it was
        assert set(pd.to_datetime(answered.feature_time, utc=True)) == set(days)
        assert answered.groupby("feature_time").size().min() >= sent // len(days) - malformed
        assert not answered.lookup_missed.any()  # the day's active users, all found
        quality = materialization_metadata(judged, "/".join(model.model_quality_key))
        assert quality["latest_source"] in {"batch", "inference_log"}
        assert quality["latest_rows"] > 0 and quality["latest_roc_auc"] is not None
        verdict = materialization_metadata(judged, "/".join(model.canary_verdict_key))
        assert verdict["verdict"] == "wait" and "each arm needs 500" in verdict["reason"]
        shadows = rows[rows.shadow]
        if model.name == "churn_classifier":  # the canary: both versions answer, no shadow
            assert set(answered.model_version) == {"1", "2"} and shadows.empty
            assert meta["rows_ingested"] == sent
        else:  # the shadow: every answer has its copy, logged after the group's SIGTERM
            assert set(answered.model_version) == {"1"} and set(shadows.model_version) == {"2"}
            assert len(shadows) == len(answered) and (shadows.status_code == 200).all()
            assert meta["rows_ingested"] == sent + len(answered)
            assert {r.split(":")[0] for r in shadows.request_id} == set(answered.request_id)
    # a gateway killed without a shutdown leaves no shadow process behind (it watches it)
    purchase = list(MODELS.values())[1]
    env = {**os.environ, "ML_ASSETS_HOME": str(home), "ML_ASSETS_SCALE": "tiny"}
    log = home / "serving" / "killed-gateway.log"
    with gateway_process(purchase.endpoint, env, log) as port:
        replay(port, purchase.endpoint, [int(answered.user_id.iloc[0])], 1)
        state = wait_for(port, lambda s: s["shadow"]["scored"] == 1, "the shadow's copy")
        shadow_pid = state["shadow"]["process"]
        with open(f"/proc/{shadow_pid}/stat") as stat:
            gateway_pid = int(stat.read().split(") ")[-1].split()[1])  # its parent
        os.killpg(gateway_pid, signal.SIGKILL)  # the gateway's group: the shadow is not in it
        deadline = time.monotonic() + 30
        while pid_alive(shadow_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_alive(shadow_pid), "the shadow process outlived its gateway"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie (exited, not yet reaped) is gone
        return stat.read().split(") ")[-1][0] != "Z"


def test_a_shadow_scores_a_copy_of_every_request_logged_never_returned(home, resources):
    """The shadow runs in a process of its own (started with the first copy, at nice 19): the
    answers come back while it is still starting, and a copy beyond the backlog is dropped
    and counted, never waited for."""
    shutil.rmtree(home / "serving" / "inference_logs", ignore_errors=True)
    materialize(home, resources, [churn_classifier_version])  # v2, alias challenger
    result = materialize(
        home,
        resources,
        [churn_endpoint_config],
        {"ops": {"serving__churn_endpoint_config": {"config": {"shadow": True}}}},
    )
    assert materialization_metadata(result, CONFIG)["routes"] == (
        "churn_classifier-1 100%, churn_classifier-2 0%"
    )
    client, gateway = client_for(home)
    gateway.shadow_copies.backlog = 2
    answers = [
        client.post(INVOKE, json={"dataframe_records": [{"user_id": 8}, {"user_id": 9}]})
        for _ in range(5)
    ]
    # every answer came from the champion before the shadow process had scored anything
    assert {a.json()["served_model_name"] for a in answers} == {"churn_classifier-1"}
    early = client.get("/ready").json()["shadow"]
    assert early["scored"] == 0 and early["dropped"] == 3 and early["alive"]
    assert early["process"] != os.getpid()
    gateway.shadow_copies.close()  # what the server's shutdown does, before the log closes
    done = gateway.shadow_copies.stats()
    assert (done["scored"], done["failed"], done["dropped"]) == (2, 0, 3)
    gateway.inference_log.close()
    ingested = materialize(home, resources, [churn_inference_log])
    meta = materialization_metadata(ingested, "serving/churn_inference_log")
    assert meta["requests_total"] == 5 and meta["shadow_rows"] == 4
    assert meta["requests_per_status"] == {"200": 5}  # the answered requests only
    rows = resources["lakehouse"].read(INFERENCE_LOG).toPandas()
    shadows, answered = rows[rows.shadow], rows[~rows.shadow]
    assert set(answered.model_version) == {"1"} and len(answered) == 10
    assert set(shadows.model_version) == {"2"} and len(shadows) == 4
    assert set(shadows.served_entity_name) == {"churn_classifier-2"}
    first_two = {a.headers["x-request-id"] for a in answers[:2]}
    assert {r.split(":")[0] for r in shadows.request_id} == first_two  # the queued ones
    assert all(r.endswith(":churn_classifier-2") for r in shadows.request_id)
    # the shadow saw the same features as the champion for the same user
    first = shadows.sort_values(["request_id", "row_index"]).iloc[0]
    twin = answered[
        (answered.request_id == first.request_id.split(":")[0])
        & (answered.row_index == first.row_index)
    ].iloc[0]
    assert json.loads(first.features) == json.loads(twin.features)

    # a shadow that fails (its store unreachable) is logged as its own 500, no secret in it
    shutil.rmtree(home / "serving" / "inference_logs", ignore_errors=True)
    _, gateway = client_for(home)
    gateway.store = UnreachableStore(gateway.store)
    now = dt.datetime.now(dt.UTC)
    body = json.dumps({"dataframe_records": [{"user_id": 8}]}).encode()
    assert not gateway.score_shadows(body, "r-failed", None, now, now)
    gateway.inference_log.close()
    (row,) = read_files(pending_files(gateway.inference_log.root)).rows
    assert (row["status_code"], row["shadow"], row["request_id"]) == (
        500,
        True,
        "r-failed:churn_classifier-2",
    )
    assert row["error"].startswith("shadow failed: ConnectionError")
    assert "app:***@db" in row["error"] and "hunter2" not in row["error"]


class UnreachableStore:
    """The online store, its reads failing with a URL that holds a password."""

    def __init__(self, store) -> None:
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    def read(self, contract, keys):
        raise ConnectionError("could not connect to postgresql://app:hunter2@db:5432/online")


AT = "2026-03-12T00:00:00+00:00"  # a copy's request time and feature time


def test_a_shadow_process_that_cannot_start_drops_its_copies_and_says_why():
    from ml_assets.programs.gateway import ShadowCopies

    copies = ShadowCopies(settings=lambda: None, endpoint_name="churn_classifier")  # unpicklable
    assert not copies.submit((b"{}", "r1", None, AT, AT))
    assert not copies.submit((b"{}", "r2", None, AT, AT))
    stats = copies.stats()
    assert stats["dropped"] == 2 and stats["process"] == "not started"
    assert "pickle" in stats["start_error"].lower()
    copies.close()  # nothing to wait for


def test_a_shadow_process_that_dies_is_reported_and_its_copies_dropped(tmp_path):
    from ml_assets.programs.gateway import ShadowCopies

    copies = ShadowCopies(tiny_settings(tmp_path), endpoint_name="no_such_endpoint")
    assert copies.submit((b"{}", "r1", None, AT, AT))  # it starts
    deadline = time.monotonic() + 120
    while copies.stats()["alive"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the child fails in gateway_for: no endpoint of that name
    assert not copies.stats()["alive"]
    assert not copies.submit((b"{}", "r2", None, AT, AT))
    stats = copies.stats()
    assert stats["dropped"] == 1 and "exited with 1" in stats["start_error"]
    copies.close()  # returns at once: nothing to wait for
    assert copies.stats()["scored"] == 0


def test_a_challenger_the_gate_refuses_is_reported_and_make_run_goes_on(home):
    """A refusal is an outcome: the champion serves alone, the run's only failures are the
    gate's, and make run treats it as such (``Staged.ok``)."""
    settings = tiny_settings(home)
    with instance_at(home) as instance:
        staged = stage_challengers(
            settings,
            instance,
            models={"purchase_propensity": {"shadow": True}},
            gate={"thresholds": [{"metric": "roc_auc", "threshold": 0.9999}]},
        )
    assert not staged.result.success and staged.ok
    assert staged.refused == ["purchase_propensity"]
    assert "the gate refused the reseeded challenger, champion v1 serves alone" in staged.lines[0]
    registry = build_resources(settings)["model_registry"].open()
    name = registry.full_name(list(MODELS.values())[1].registered_model)
    assert str(registry.by_alias(name, "champion").version) == "1"
    assert registry.by_alias(name, "challenger") is None
    config = json.loads((home / "serving" / "purchase_propensity.json").read_text())
    assert [e["entity_version"] for e in config["config"]["served_entities"]] == ["1"]


def test_the_gateway_scores_the_project_model_as_pyfunc_does_without_pandas_or_its_checks(
    ingested, caplog
):
    """The project's ProbabilityModel is scored straight from the request's records (the
    gateway has validated and typed them against the signature already): its answers are
    pyfunc's, to the last bit, on looked-up features and on overrides pyfunc must handle. A
    version whose own code encodes differently is scored by its own code; a model of another
    kind goes through pyfunc's predict on the signature's frame."""
    import copy

    from ml_assets.lib.models.encoding import FeatureEncoding, records_frame
    from ml_assets.programs.gateway import scorer

    home, _ = ingested
    _, gateway = client_for(home)
    deployment = gateway.deployment
    served = "churn_classifier-1"
    direct, encoding = deployment.scorers[served], deployment.encodings[served]
    pyfunc = deployment.models[served]
    users = sorted(gateway.store.read_keys(user_activity.CONTRACT))[:50]
    records = [
        feature
        for u in users
        for feature in gateway.score(
            json.dumps({"inputs": {"user_id": [u]}}).encode(), None, served
        ).features
    ]
    numbers = [c for c in encoding.columns if c not in encoding.categories]
    levels = list(encoding.categories)
    assert numbers and levels
    records[0] = records[0] | {numbers[0]: None, levels[0]: "a level never seen"}
    records[1] = records[1] | {numbers[-1]: 1e9, levels[-1]: None}
    expected = list(pyfunc.predict(records_frame(records, encoding)))  # schema enforced
    assert list(direct(records)) == expected
    assert len(set(expected)) > 10  # the records differ, and so do their scores

    # a version logged with code that encodes differently: its own predict answers
    class Shifted(FeatureEncoding):
        def encode(self, frame):
            return super().encode(frame) + 1.0

    own = copy.copy(pyfunc.unwrap_python_model())
    own.encoding = Shifted(tuple(own.encoding.columns), dict(own.encoding.categories))

    class Logged:
        def unwrap_python_model(self):
            return own

        def predict(self, frame):
            raise AssertionError("the version's own predict answers, not pyfunc's")

    with caplog.at_level(logging.WARNING, logger="ml_assets.programs.gateway"):
        shifted = scorer(Logged(), encoding)
    assert "disagrees with the model's own predict" in caplog.text
    answer = list(shifted(records))
    assert answer == list(own.predict(None, records_frame(records, encoding)))
    assert answer != expected

    class Other:
        seen: list = []

        def unwrap_python_model(self):
            raise ValueError("not a PythonModel")

        def predict(self, frame):
            self.seen.append(frame)
            return np.arange(len(frame), dtype="float64")

    other = Other()
    assert list(scorer(other, encoding)(records[:3])) == [0.0, 1.0, 2.0]
    assert list(other.seen[0].columns) == list(encoding.columns)  # the signature's frame
