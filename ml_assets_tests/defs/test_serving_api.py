"""The gateway speaks the Databricks serving-endpoints API, and the Databricks deployer is
tested against it with the real ``databricks-sdk``: the real gateway process (``make serve``)
is created, updated to a canary split, read, listed and queried through ``WorkspaceClient``,
and the routing is observed in the answers. In process (Starlette's test client): every way a
config update can be refused, each a 4xx naming the problem while the old config keeps
serving."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    InvalidParameterValue,
    NotFound,
    ResourceAlreadyExists,
)
from databricks.sdk.service.serving import EndpointStateConfigUpdate, EndpointStateReady

from ml_assets import names
from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.lib.serving.endpoint import plan_endpoint
from ml_assets.programs.reporting import run_check_results
from ml_assets.resources.databricks import WorkspaceError
from ml_assets.resources.serving import DatabricksEndpointDeployer
from ml_assets_tests.churn import (
    churn_classifier_version,
    churn_endpoint_config,
    routes_sum_to_100,
    served_entities_ready,
    signatures_match_online_features,
)
from ml_assets_tests.defs.test_serving import (
    client_for,
    config_path,
    materialize,
)
from ml_assets_tests.gateway_process import free_port, running_gateway

NAME = CHURN_CLASSIFIER.endpoint
MODEL = names.CHURN_MODEL_NAME
API = "/api/2.0/serving-endpoints"
TOKEN = "sdk-contract-token"


def _config(champion: str, challenger: str | None = None, canary: int = 10) -> dict:
    return plan_endpoint(NAME, MODEL, champion, challenger, canary_percentage=canary).body()


def _wait_not_updating(client, deadline: float = 60) -> dict:
    end = time.monotonic() + deadline
    while True:
        body = client.get(f"{API}/{NAME}").json()
        if body["state"]["config_update"] != "IN_PROGRESS":
            return body
        assert time.monotonic() < end, "the config update never finished"
        time.sleep(0.2)


def test_get_and_list_describe_the_endpoint_as_the_serving_api_does(ingested):
    client, _ = client_for(ingested[0])
    body = client.get(f"{API}/{NAME}").json()
    assert body["name"] == NAME
    assert body["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    (entity,) = body["config"]["served_entities"]
    assert (entity["name"], entity["entity_name"], entity["entity_version"]) == (
        "churn_classifier-1",
        MODEL,
        "1",
    )
    assert entity["state"] == {"deployment": "DEPLOYMENT_READY"}
    assert body["config"]["traffic_config"] == {
        "routes": [{"served_entity_name": "churn_classifier-1", "traffic_percentage": 100}]
    }
    assert body["endpoint_url"].endswith(f"/serving-endpoints/{NAME}/invocations")
    assert client.get(API).json()["endpoints"] == [body]
    missing = client.get(f"{API}/other")
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_an_update_the_api_would_refuse_is_a_4xx_and_the_old_config_keeps_serving(ingested):
    client, gateway = client_for(ingested[0])  # every update here is refused: nothing written
    before = client.get(f"{API}/{NAME}").json()["config"]
    good = _config("1")["config"]

    def put(body) -> tuple[int, dict]:
        answer = client.put(f"{API}/{NAME}/config", content=json.dumps(body))
        return answer.status_code, answer.json()

    refused = {
        "sum": (
            {
                **good,
                "traffic_config": {
                    "routes": [{**good["traffic_config"]["routes"][0], "traffic_percentage": 90}]
                },
            },
            "traffic percentages sum to 90, expected 100",
        ),
        "version": (
            _config("99")["config"],
            "churn_classifier-99: main.models.churn_classifier v99",
        ),
        "unknown key": ({**good, "workload": "XL"}, "workload: Extra inputs are not permitted"),
        "no route target": (
            {**good, "traffic_config": {"routes": [{"traffic_percentage": 100}]}},
            "a route names its served entity in served_entity_name",
        ),
        "bad size": (
            {**good, "served_entities": [{**good["served_entities"][0], "workload_size": "XL"}]},
            "served_entities.0.workload_size",
        ),
        "model name": (
            {
                **good,
                "served_entities": [
                    {**good["served_entities"][0], "entity_name": "churn_classifier"}
                ],
            },
            "Unity Catalog needs three, catalog.schema.model",
        ),
    }
    for case, (body, message) in refused.items():
        status, answer = put(body)
        assert status == 400, case
        assert answer["error_code"] == "INVALID_PARAMETER_VALUE", case
        assert message in answer["message"], (case, answer["message"])
    malformed = (
        (b"{not json", "not valid JSON"),
        (b"[1]", "must be a JSON object"),
        (b"[" * 100_000, "nested too deeply"),  # the parser's recursion, not a 500
        (b'{"config": ' + b"1" * 5_000 + b"}", "not valid JSON"),  # past int's digit limit
        (b'{"config": NaN}', "not valid JSON"),
        (b'{"config": "\xff"}', "not valid JSON"),  # not UTF-8
    )
    for raw, message in malformed:
        for answer in (
            client.put(f"{API}/{NAME}/config", content=raw),
            client.post(API, content=raw),
        ):
            assert answer.status_code == 400, (raw[:20], answer.status_code)
            assert answer.json()["error_code"] == "MALFORMED_REQUEST"
            assert message in answer.json()["message"], (raw[:20], answer.json()["message"])
    assert client.put(f"{API}/other/config", content=json.dumps(good)).status_code == 404
    created = client.post(API, content=json.dumps({"name": "other", "config": good}))
    assert created.status_code == 400 and "serves one endpoint" in created.json()["message"]
    again = client.post(API, content=json.dumps({"name": NAME, "config": good}))
    assert again.status_code == 409 and again.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"

    gateway.pending = gateway.deployment.endpoint  # an update in progress: a second is refused
    busy = client.put(f"{API}/{NAME}/config", content=json.dumps(good))
    assert busy.status_code == 409 and busy.json()["error_code"] == "RESOURCE_CONFLICT"
    gateway.pending = None
    after = client.get(f"{API}/{NAME}").json()
    assert after["config"] == before and after["state"]["config_update"] == "NOT_UPDATING"
    invoked = client.post(
        f"/serving-endpoints/{NAME}/invocations", json={"dataframe_records": [{"user_id": 7}]}
    )
    assert invoked.json()["served_model_name"] == "churn_classifier-1"


def test_a_config_that_fails_to_load_reports_update_failed_and_keeps_serving(home, monkeypatch):
    client, gateway = client_for(home)
    real_load = gateway.registry.load

    def broken(name, version):
        raise OSError("the artifact store is unreachable")

    monkeypatch.setattr(gateway.registry, "load", broken)
    answer = client.put(
        f"{API}/{NAME}/config", content=json.dumps(_config("1", canary=10)["config"])
    )
    assert answer.status_code == 200
    body = _wait_not_updating(client)
    assert body["state"] == {"ready": "READY", "config_update": "UPDATE_FAILED"}
    assert "the artifact store is unreachable" in body["state_message"]
    monkeypatch.setattr(gateway.registry, "load", real_load)
    assert (
        client.post(
            f"/serving-endpoints/{NAME}/invocations", json={"dataframe_records": [{"user_id": 7}]}
        ).status_code
        == 200
    )


def test_the_databricks_deployer_creates_updates_and_queries_make_serve_through_the_sdk(
    home, resources
):
    """The real SDK against the real gateway process, with a bearer token: create, canary,
    get, list, query, a refused update; then the config asset deploying through it."""
    materialize(home, resources, [churn_classifier_version])  # v2: a challenger to canary
    config_path(home).unlink()  # no endpoint yet: the deployer must create it
    with running_gateway(home, wait_ready=False, ML_ASSETS_SERVING_TOKEN=TOKEN) as process:
        host = f"http://127.0.0.1:{process.port}"
        deployer = DatabricksEndpointDeployer(host=host, token=TOKEN, retry_timeout_seconds=10)
        w = WorkspaceClient(host=host, token=TOKEN)
        with pytest.raises(NotFound):
            w.serving_endpoints.get(NAME)
        assert list(w.serving_endpoints.list()) == []

        created = deployer.deploy(plan_endpoint(NAME, MODEL, "1"))
        assert (created.action, created.config_version) == ("created", 1)
        assert created.where == f"{host}/serving-endpoints/{NAME}/invocations"

        canary = plan_endpoint(NAME, MODEL, "1", "2", canary_percentage=50)
        updated = deployer.deploy(canary)
        assert (updated.action, updated.config_version) == ("updated", 2)

        detailed = w.serving_endpoints.get(NAME)
        assert detailed.state.ready == EndpointStateReady.READY
        assert detailed.state.config_update == EndpointStateConfigUpdate.NOT_UPDATING
        assert [e.entity_version for e in detailed.config.served_entities] == ["1", "2"]
        routes = {
            r.served_entity_name: r.traffic_percentage
            for r in detailed.config.traffic_config.routes
        }
        assert routes == {"churn_classifier-1": 50, "churn_classifier-2": 50}
        assert [e.name for e in w.serving_endpoints.list()] == [NAME]
        assert deployer.deployed(NAME) == canary

        served = Counter()
        for user_id in range(60):
            answer = w.serving_endpoints.query(NAME, dataframe_records=[{"user_id": user_id}])
            assert 0.0 <= answer.predictions[0] <= 1.0
            served[answer.served_model_name] += 1
        assert set(served) == {"churn_classifier-1", "churn_classifier-2"}  # 50/50: both seen
        assert min(served.values()) >= 10

        refused = plan_endpoint(NAME, MODEL, "1", "9", canary_percentage=50)
        with pytest.raises(InvalidParameterValue, match="churn_classifier-9"):
            deployer.deploy(refused)
        assert deployer.deployed(NAME) == canary  # the old config keeps serving
        with pytest.raises(ResourceAlreadyExists):
            w.serving_endpoints.create_and_wait(NAME, config=None)

        # the config asset deploys through the SDK; its checks read the config back through it
        result = materialize(
            home,
            {**resources, "endpoint_deployer": deployer},
            [
                churn_endpoint_config,
                routes_sum_to_100,
                served_entities_ready,
                signatures_match_online_features,
            ],
        )
        checks = {c.check_name: c.passed for c in run_check_results(result)}
        assert checks == {
            "routes_sum_to_100": True,
            "served_entities_ready": True,
            "signatures_match_online_features": True,
        }
        metadata = result.asset_materializations_for_node("serving__churn_endpoint_config")[
            0
        ].metadata
        assert metadata["deployment"].value == "updated"
        assert metadata["deployed_to"].value.startswith(f"{host}/")
        assert metadata["routes"].value == "churn_classifier-1 90%, churn_classifier-2 10%"
        # the checks read the config back through the SDK: it is the one the gateway serves
        assert deployer.deployed(NAME).shares() == {
            "churn_classifier-1": 90,
            "churn_classifier-2": 10,
        }

        wrong = DatabricksEndpointDeployer(host=host, token="wrong", retry_timeout_seconds=2)
        with pytest.raises(WorkspaceError, match="refused the credentials: Missing or wrong"):
            wrong.deployed(NAME)


def test_an_unreachable_host_fails_within_seconds_naming_the_setting():
    port = free_port()  # nothing listens there
    outcome: list[BaseException] = []

    def deploy() -> None:
        try:
            DatabricksEndpointDeployer(
                host=f"http://127.0.0.1:{port}", token="t", retry_timeout_seconds=2
            ).deploy(plan_endpoint(NAME, MODEL, "1"))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=deploy, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the deployer hung on an unreachable host"
    (error,) = outcome
    assert isinstance(error, WorkspaceError)
    assert f"Cannot reach the Databricks workspace at http://127.0.0.1:{port}" in str(error)
    assert "DATABRICKS_HOST" in str(error)
