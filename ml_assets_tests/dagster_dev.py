"""``make ui`` (``dagster dev``) for tests: started the way the README says, in its own process
group with its own home and port, talked to through the GraphQL API the UI uses, and stopped
with SIGINT (``dagster dev`` shuts its webserver, daemon and code server down on it)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from ml_assets.deployments import REPO_ROOT
from ml_assets.programs.replay import free_port


class DagsterDev:
    def __init__(self, url: str, process: subprocess.Popen, log: Path):
        self.url = url
        self.process = process
        self.log = log

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        response = httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            timeout=timeout,
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def wait_for_location(self, name: str, timeout: float = 180) -> None:
        """Until the code location is loaded (the UI shows it as loaded)."""
        query = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
            name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
        } } } }"""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"dagster dev exited ({self.process.returncode}):\n{self.tail()}"
                )
            try:
                entries = self.graphql(query, timeout=10)["workspaceOrError"]["locationEntries"]
            except (httpx.HTTPError, KeyError) as error:
                last = error
            else:
                entry = next((e for e in entries if e["name"] == name), None)
                last = entry
                if entry and entry["loadStatus"] == "LOADED":
                    loaded = entry["locationOrLoadError"]
                    if loaded["__typename"] != "RepositoryLocation":
                        raise AssertionError(f"{name} failed to load: {loaded}")
                    return
            time.sleep(1)
        raise AssertionError(f"{name} not loaded after {timeout} s (last: {last}):\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def dagster_dev(home: Path, env: dict[str, str] | None = None):
    """``make ui`` on a free port with ``ML_ASSETS_HOME=home``; yields a DagsterDev."""
    port = free_port()
    log = home / "dagster_dev.log"
    home.mkdir(parents=True, exist_ok=True)
    environ = {
        **os.environ,
        "ML_ASSETS_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        **(env or {}),
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "ui", f"UI_PORT={port}"],
            cwd=REPO_ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to stop it whole
        )
    server = DagsterDev(f"http://127.0.0.1:{port}", process, log)
    try:
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    with suppress(ProcessLookupError):  # whatever is left of the group (a run worker, ...)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
