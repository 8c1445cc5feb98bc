"""Secrets never reach a store, a log or an error: the online store's password and the
gateway's token are set to recognisable values, the tiny graph runs on PostgreSQL, the gateway
answers a few calls, and every file the project wrote is searched for them."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from ml_assets.deployments import DeploymentError, current_settings
from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.lib.redact import redact_url
from ml_assets.programs.gateway import build_app, gateway_for
from ml_assets.programs.run import run_main_job
from ml_assets_tests.defs.conftest import instance_at

PASSWORD = f"pw-{secrets.token_hex(8)}"
TOKEN = f"tok-{secrets.token_hex(8)}"
INVOKE = f"/serving-endpoints/{CHURN_CLASSIFIER.endpoint}/invocations"


def _files_holding(root: Path, needles: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [
                f"{path.relative_to(root)}: {n[:6]}..." for n in needles if n.encode() in data
            ]
    return found


@pytest.mark.abuse  # a whole run of the tiny graph (~90 s): `make abuse`, after the suite in CI
def test_the_password_and_the_token_are_in_no_store_log_or_error(
    tmp_path, monkeypatch, postgres_url, caplog, capfd
):
    url = sa.make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=False)
    home = tmp_path / "home"
    for key, value in {
        "ML_ASSETS_HOME": str(home),
        "ML_ASSETS_SCALE": "tiny",
        "ML_ASSETS_ONLINE_STORE_URL": url,
        "ML_ASSETS_SERVING_TOKEN": TOKEN,
    }.items():
        monkeypatch.setenv(key, value)
    settings = current_settings()
    assert PASSWORD not in repr(settings) and TOKEN not in repr(settings)

    with instance_at(home) as instance:
        result = run_main_job(settings, instance)
        assert result.success
        snapshot = instance.get_job_snapshot(result.dagster_run.job_snapshot_id)
        stored = dg.serialize_value(snapshot)  # what the UI shows as the resource's config
        assert "ML_ASSETS_ONLINE_STORE_URL" in stored and PASSWORD not in stored

    gateway = gateway_for(settings)
    assert gateway.reload_if_changed(), gateway.last_error
    client = TestClient(build_app(gateway))
    body = {"dataframe_records": [{"user_id": 7}]}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post(INVOKE, json=body, headers=auth).status_code == 200
    assert client.post(INVOKE, json=body, headers={"Authorization": "Bearer no"}).status_code == 401
    assert client.post(INVOKE, content=b"{", headers=auth).status_code == 400
    assert client.get("/ready", headers=auth).json()["ready"]

    mistyped = f"postgres://app:{PASSWORD}@db.internal:5432/online"
    with pytest.raises(DeploymentError) as caught:
        current_settings({"ML_ASSETS_HOME": str(home), "ML_ASSETS_ONLINE_STORE_URL": mistyped})
    assert PASSWORD not in str(caught.value) and "postgres://app:***@db.internal" in str(
        caught.value
    )
    monkeypatch.setenv("ML_ASSETS_ONLINE_STORE_URL", "sqlite:///elsewhere.db")
    with pytest.raises(DeploymentError, match="not the value of ML_ASSETS_ONLINE_STORE_URL") as c:
        gateway_for(settings)  # bound from the environment, which must hold it
    assert PASSWORD not in str(c.value)

    # every store under the home: Dagster's run and event storage, compute logs, MLflow's
    # database and artifacts, reports, endpoint configs, the lakehouse
    assert (home / "dagster_home").is_dir() and (home / "mlflow.db").is_file()
    assert _files_holding(home, [PASSWORD, TOKEN]) == []
    captured = capfd.readouterr()
    for text in (captured.out, captured.err, caplog.text):
        assert PASSWORD not in text and TOKEN not in text


def test_urls_lose_their_credentials():
    assert redact_url("postgresql+psycopg://app:s3cret@db:5432/x") == (
        "postgresql+psycopg://app:***@db:5432/x"
    )
    assert redact_url("error at postgres://:s3cret@h/db, again https://u:t@h") == (
        "error at postgres://:***@h/db, again https://u:***@h"
    )
    assert redact_url("sqlite:////tmp/online.db") == "sqlite:////tmp/online.db"
    assert redact_url("sqlite:///x.db?password=s3cret&mode=ro") == (
        "sqlite:///x.db?password=***&mode=ro"
    )
    assert redact_url("postgresql://h/db?sslmode=require&PassWord=s3cret") == (
        "postgresql://h/db?sslmode=require&PassWord=***"
    )
    assert redact_url("sc://h:443/;token=dapi123;x-databricks-cluster-id=c") == (
        "sc://h:443/;token=***;x-databricks-cluster-id=c"
    )


def test_mlflow_runs_record_the_git_remote_without_its_credentials(tmp_path):
    """MLflow strips credentials from the remote it records (mlflow.source.git.repoURL);
    this guards that property for the pinned version, for every run the project starts."""
    repo = tmp_path / "repo"
    repo.mkdir()
    remote = f"https://someone:{PASSWORD}@git.example.com/org/models.git"
    for command in (
        ["git", "init", "-q"],
        ["git", "remote", "add", "origin", remote],
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
    ):
        subprocess.run(command, cwd=repo, check=True, capture_output=True)
    script = repo / "train.py"  # MLflow reads the git context of the program's main file
    script.write_text(
        "import sys\n"
        "from ml_assets.resources.mlflow import LocalMlflow\n"
        "tracking = LocalMlflow(home=sys.argv[1])\n"
        "with tracking.run('outer') as outer, tracking.run('inner', nested=True) as inner:\n"
        "    pass\n"
        "client = tracking.client()\n"
        "for run in (outer, inner):\n"
        "    print(client.get_run(run.info.run_id).data.tags['mlflow.source.git.repoURL'])\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "home")],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["https://git.example.com/org/models.git"] * 2
    assert _files_holding(tmp_path / "home", [PASSWORD]) == []
