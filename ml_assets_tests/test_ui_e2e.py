"""Used as a person would: ``make ui`` (``dagster dev``) on the tiny scale, the whole graph
launched through the GraphQL API the UI uses, waited for, and every asset check read back."""

from __future__ import annotations

import time

import pytest

from ml_assets import names
from ml_assets.lib.source import SCALES
from ml_assets_tests.dagster_dev import dagster_dev

# A whole-graph run through `dagster dev` (two minutes): handed to a worker first.
pytestmark = pytest.mark.whole_graph

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}"""
RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
}"""
CHECKS = """
{
  assetNodes {
    assetKey { path }
    assetChecksOrError {
      __typename
      ... on AssetChecks {
        checks {
          name
          blocking
          executionForLatestMaterialization {
            runId
            status
            evaluation { success severity description }
          }
        }
      }
    }
  }
}"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def wait_for_run(server, run_id: str, timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = server.graphql(RUN, {"runId": run_id})["runOrError"]["status"]
        if status in FINISHED:
            return status
        time.sleep(1)  # a GraphQL read of one run's status: cheap
    raise AssertionError(f"run {run_id} still {status} after {timeout} s:\n{server.tail()}")


def test_the_ui_materializes_the_whole_graph_and_shows_every_check(tmp_path):
    days = SCALES["tiny"].dates
    with dagster_dev(tmp_path / "home", env={"ML_ASSETS_SCALE": "tiny"}) as server:
        server.wait_for_location("ml_assets")
        launched = server.graphql(
            LAUNCH,
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": "ml_assets",
                        "repositoryName": "__repository__",
                        "jobName": names.MAIN_JOB,
                    },
                    "runConfigData": {},
                    "executionMetadata": {
                        "tags": [  # every partition in one run, as the launchpad's range does
                            {
                                "key": "dagster/asset_partition_range_start",
                                "value": days[0].isoformat(),
                            },
                            {
                                "key": "dagster/asset_partition_range_end",
                                "value": days[-1].isoformat(),
                            },
                        ]
                    },
                }
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        assert wait_for_run(server, run_id) == "SUCCESS", server.tail()
        nodes = server.graphql(CHECKS)["assetNodes"]
    results = {
        ("/".join(node["assetKey"]["path"]), check["name"]): check
        for node in nodes
        for check in node["assetChecksOrError"].get("checks", [])
    }
    assert len(results) >= 55
    not_run = [k for k, c in results.items() if c["executionForLatestMaterialization"] is None]
    assert not_run == []
    executions = {k: c["executionForLatestMaterialization"] for k, c in results.items()}
    assert {e["runId"] for e in executions.values()} == {run_id}
    failed = {
        k: e["evaluation"]["description"]
        for k, e in executions.items()
        if e["evaluation"] is None or not e["evaluation"]["success"]
    }
    assert failed == {}
    assert executions[("monitoring/churn_feature_drift", names.CHECK_FEATURE_DRIFT)]["status"] == (
        "SUCCEEDED"
    )
    assert results[("raw/users", names.CHECK_NO_BACKDATED_CHANGES)]["blocking"]
