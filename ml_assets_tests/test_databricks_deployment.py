"""The ``databricks`` row of the deployment table, offline: the definitions load and bind only
Databricks implementations without a single connection attempt; every bad setting is named in
one error at load; secrets are bound by name; reports go to a volume through the real SDK's
Files API (against a recording HTTP server)."""

from __future__ import annotations

import http.server
import socket
import threading

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions
from ml_assets.deployments import DeploymentError, current_settings
from ml_assets.lib.models.churn_classifier import REGISTERED_MODEL
from ml_assets.resources.lakehouse import CatalogDeltaLakehouse
from ml_assets.resources.lakehouse_monitoring import DatabricksLakehouseMonitoring
from ml_assets.resources.mlflow import DatabricksMlflow
from ml_assets.resources.online_store import SqlOnlineStore
from ml_assets.resources.registry import UnityCatalogModelRegistry
from ml_assets.resources.reports import DatabricksVolumeReports
from ml_assets.resources.serving import DatabricksEndpointDeployer
from ml_assets.resources.spark import DatabricksConnectSpark, SparkConnectRemote
from ml_assets.resources.training import DatabricksTraining

TOKEN = "dapi-offline-test-token-0123456789"
PASSWORD = "lakebase-password-9876"
WORKSPACE = {
    "ML_ASSETS_DEPLOYMENT": "databricks",
    "ML_ASSETS_CATALOG": "ml_dev",
    "DATABRICKS_HOST": "https://adb-1234567890123456.7.azuredatabricks.net",
    "DATABRICKS_TOKEN": TOKEN,
    "ML_ASSETS_ONLINE_STORE_URL": (
        f"postgresql+psycopg://ml_assets:{PASSWORD}@instance-1.database.cloud.databricks.com"
        ":5432/online?sslmode=require"
    ),
}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a name fails the test."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"a network call was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.fixture
def workspace_env(monkeypatch, tmp_path):
    for key in ("ML_ASSETS_ENGINE", "ML_ASSETS_SPARK_REMOTE", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ML_ASSETS_HOME", str(tmp_path))
    for key, value in WORKSPACE.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_the_databricks_definitions_load_offline_and_bind_only_databricks_parts(
    workspace_env, no_network
):
    settings = current_settings()
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    assert len(graph.get_all_asset_keys()) > 10
    defs.resolve_job_def("rollback_champion")
    resources = defs.resources
    expected = {
        "spark": DatabricksConnectSpark,
        "lakehouse": CatalogDeltaLakehouse,
        "mlflow_tracking": DatabricksMlflow,
        "model_registry": UnityCatalogModelRegistry,
        "online_store": SqlOnlineStore,
        "endpoint_deployer": DatabricksEndpointDeployer,
        "reports": DatabricksVolumeReports,
        "training_launcher": DatabricksTraining,
        "lakehouse_monitoring": DatabricksLakehouseMonitoring,
    }
    assert {k: type(resources[k]) for k in expected} == expected
    assert resources["spark"].traits.name == "databricks-serverless"  # no cluster id
    assert resources["lakehouse"].catalog == "ml_dev"
    assert resources["mlflow_tracking"].tracking_uri() == "databricks"
    registry = resources["model_registry"].open()
    assert registry.registry_uri == "databricks-uc"
    assert registry.full_name(REGISTERED_MODEL) == "ml_dev.models.churn_classifier"
    deployer = resources["endpoint_deployer"]
    assert (deployer.inference_table_catalog, deployer.inference_table_schema) == (
        "ml_dev",
        "serving",
    )
    assert resources["reports"].volume_path == "/Volumes/ml_dev/monitoring/reports"
    assert resources["landing"].root == "/Volumes/ml_dev/landing/files"
    launcher = resources["training_launcher"]
    assert launcher.volume == "/Volumes/ml_dev/ml_assets/pipes" and launcher.cluster_id is None
    assert launcher.where() == "Databricks job on serverless jobs compute (Dagster Pipes)"
    assert launcher.token.env_var_name == "DATABRICKS_TOKEN"
    monitor = dg.AssetKey(["monitoring", "churn_predictions_lakehouse_monitor"])
    assert graph.get(monitor).parent_keys == {dg.AssetKey(["serving", "churn_predictions"])}
    assert resources["lakehouse_monitoring"].output_schema == "ml_dev.monitoring"
    # secrets are bound by name: nothing Dagster stores or shows holds them
    shown = repr(resources) + repr(settings)
    assert TOKEN not in shown and PASSWORD not in shown
    assert isinstance(deployer.token, dg.EnvVar) and deployer.token.env_var_name == (
        "DATABRICKS_TOKEN"
    )
    assert resources["online_store"].database_url.env_var_name == "ML_ASSETS_ONLINE_STORE_URL"
    assert no_network == []


def test_a_cluster_or_a_spark_connect_string_picks_the_engine(workspace_env, no_network):
    workspace_env.setenv("DATABRICKS_CLUSTER_ID", "0123-456789-abcdefgh")
    spark = build_definitions(current_settings()).resources["spark"]
    assert (spark.cluster_id, spark.traits.name, spark.traits.cache) == (
        "0123-456789-abcdefgh",
        "databricks",
        True,
    )
    workspace_env.delenv("DATABRICKS_CLUSTER_ID")
    remote = f"sc://adb-1.azuredatabricks.net:443/;token={TOKEN};x-databricks-cluster-id=c"
    workspace_env.setenv("ML_ASSETS_SPARK_REMOTE", remote)
    spark = build_definitions(current_settings()).resources["spark"]
    assert isinstance(spark, SparkConnectRemote) and spark.traits.name == "databricks"
    assert spark.remote.env_var_name == "ML_ASSETS_SPARK_REMOTE"  # the string holds a token
    assert no_network == []


def test_without_databricks_connect_the_session_says_how_to_get_it(workspace_env):
    spark = build_definitions(current_settings()).resources["spark"]
    try:
        import databricks.connect  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="make setup DEPLOYMENT=databricks"):
            spark.get_session()
    else:  # the Databricks environment: the builder exists (no session is made offline)
        from databricks.connect import DatabricksSession

        assert hasattr(DatabricksSession.builder, "serverless")


def test_every_bad_setting_is_named_at_load_in_one_error(workspace_env):
    bad = {
        "ML_ASSETS_CATALOG": "ML-Dev",
        "DATABRICKS_HOST": "http://adb-1.azuredatabricks.net/some/path",
        "DATABRICKS_CLUSTER_ID": "my cluster",
        "ML_ASSETS_ONLINE_STORE_URL": f"sqlite:///tmp/online.db?password={PASSWORD}",
        "ML_ASSETS_EXPERIMENT": "churn",
        "ML_ASSETS_REPORTS_VOLUME": "/tmp/reports",
        "ML_ASSETS_ENGINE": "spark",
        "ML_ASSETS_PIPES_VOLUME": "dbfs:/tmp/pipes",
        "ML_ASSETS_TRAINING": "subprocess",
    }
    for key, value in bad.items():
        workspace_env.setenv(key, value)
    workspace_env.delenv("DATABRICKS_TOKEN")
    with pytest.raises(DeploymentError) as error:
        current_settings()
    message = str(error.value)
    assert "has 10 problem(s)" in message
    for expected in (
        "ML_ASSETS_CATALOG='ML-Dev': a catalog name is lower-case",
        "DATABRICKS_HOST='http://adb-1.azuredatabricks.net/some/path': expected the workspace URL",
        "DATABRICKS_TOKEN not set: set DATABRICKS_HOST and DATABRICKS_TOKEN",
        "DATABRICKS_CLUSTER_ID='my cluster': expected a cluster id like 0123-456789-abcdefgh",
        "ML_ASSETS_ONLINE_STORE_URL must be the Lakebase (PostgreSQL) database",
        "ML_ASSETS_EXPERIMENT='churn': a workspace path",
        "ML_ASSETS_REPORTS_VOLUME='/tmp/reports': expected a Unity Catalog volume path",
        "ML_ASSETS_ENGINE='spark' picks a local engine lane",
        "ML_ASSETS_PIPES_VOLUME='dbfs:/tmp/pipes': expected a Unity Catalog volume path",
        "ML_ASSETS_TRAINING='subprocess' picks a local training launcher",
    ):
        assert expected in message, expected
    assert PASSWORD not in message


def test_a_profile_stands_in_for_host_and_token(workspace_env, no_network):
    workspace_env.delenv("DATABRICKS_HOST")
    workspace_env.delenv("DATABRICKS_TOKEN")
    workspace_env.setenv("DATABRICKS_CONFIG_PROFILE", "ml-dev")
    resources = build_definitions(current_settings()).resources
    assert resources["mlflow_tracking"].tracking_uri() == "databricks://ml-dev"
    assert resources["model_registry"].open().registry_uri == "databricks-uc://ml-dev"
    assert (resources["endpoint_deployer"].profile, resources["endpoint_deployer"].token) == (
        "ml-dev",
        None,
    )
    assert no_network == []


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str | None, bytes]] = []

    def do_GET(self):  # the SDK's host-metadata probe: not a workspace
        self.send_response(404)
        self.end_headers()

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(("PUT", self.path, self.headers.get("Authorization"), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_reports_are_uploaded_to_the_volume_through_the_files_api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reports = DatabricksVolumeReports(
            volume_path="/Volumes/ml_dev/monitoring/reports",
            host=f"http://127.0.0.1:{server.server_port}",
            token="t0ken",
            retry_timeout_seconds=5,
        )
        where = reports.write("feature_drift/2026-04-30.html", "<html>drift</html>")
        assert where == "/Volumes/ml_dev/monitoring/reports/feature_drift/2026-04-30.html"
        ((method, path, auth, body),) = _Recorder.seen
        assert (method, auth, body) == ("PUT", "Bearer t0ken", b"<html>drift</html>")
        assert path == (
            "/api/2.0/fs/files/Volumes/ml_dev/monitoring/reports/feature_drift/2026-04-30.html"
            "?overwrite=true"
        )
        with pytest.raises(ValueError, match="stays inside"):
            reports.write("../escape.html", "x")
        assert len(_Recorder.seen) == 1
    finally:
        server.shutdown()


def test_a_secret_missing_from_the_process_environment_is_refused_when_bound(monkeypatch, tmp_path):
    """Settings read from a mapping, secrets bound by name: the process must hold them."""
    for key in ("DATABRICKS_TOKEN", "ML_ASSETS_ONLINE_STORE_URL", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    settings = current_settings({**WORKSPACE, "ML_ASSETS_HOME": str(tmp_path)})
    with pytest.raises(
        DeploymentError, match="not the value of DATABRICKS_TOKEN in this process's"
    ):
        build_definitions(settings)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    monkeypatch.setenv("ML_ASSETS_ONLINE_STORE_URL", "postgresql+psycopg://other@h:5432/db")
    with pytest.raises(
        DeploymentError, match="not the value of ML_ASSETS_ONLINE_STORE_URL in this"
    ):
        build_definitions(settings)  # a different value than the settings read


def test_a_malformed_local_online_store_url_is_named_without_its_password(tmp_path):
    with pytest.raises(DeploymentError) as error:
        current_settings(
            {
                "ML_ASSETS_HOME": str(tmp_path),
                "ML_ASSETS_ONLINE_STORE_URL": f"mysql://h/db?password={PASSWORD}",
            }
        )
    assert "expected a SQLAlchemy URL" in str(error.value) and PASSWORD not in str(error.value)


def test_lakehouse_monitoring_can_be_left_out(workspace_env, no_network, tmp_path):
    workspace_env.setenv("ML_ASSETS_LAKEHOUSE_MONITORING", "0")
    defs = build_definitions(current_settings())
    assert "lakehouse_monitoring" not in defs.resources
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "monitoring/churn_predictions_lakehouse_monitor" not in keys
    local = build_definitions(current_settings({"ML_ASSETS_HOME": str(tmp_path)}))
    assert "lakehouse_monitoring" not in local.resources  # nothing to monitor with locally
    workspace_env.setenv("ML_ASSETS_LAKEHOUSE_MONITORING", "yes")
    with pytest.raises(DeploymentError, match=r"ML_ASSETS_LAKEHOUSE_MONITORING='yes'; expected"):
        current_settings()
