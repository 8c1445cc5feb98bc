"""The real gateway (`make serve`) as a process on a free port of 127.0.0.1, for tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ml_assets.deployments import REPO_ROOT
from ml_assets.programs.replay import free_port


def get_json(port: int, path: str, headers: dict[str, str] | None = None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


@dataclass(frozen=True)
class GatewayProcess:
    port: int
    pid: int
    log: Path

    def rss_bytes(self) -> int:
        """Resident memory of the process (Linux /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {self.pid}")


@contextmanager
def running_gateway(home: Path, wait_ready: bool = True, **env: str) -> Iterator[GatewayProcess]:
    """Start ``python -m ml_assets.programs.gateway`` on the tiny home; wait until /ready (or only
    /health, for a gateway with no config yet); stop it."""
    port = free_port()
    log = home / f"gateway-{port}.log"
    environment = {**os.environ, "ML_ASSETS_HOME": str(home), "ML_ASSETS_SCALE": "tiny", **env}
    headers = (
        {"Authorization": f"Bearer {env['ML_ASSETS_SERVING_TOKEN']}"}
        if ("ML_ASSETS_SERVING_TOKEN" in env)
        else {}
    )
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "ml_assets.programs.gateway", "--port", str(port)],
            cwd=REPO_ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get_json(port, "/ready" if wait_ready else "/health", headers).get(
                    "ready", not wait_ready
                ):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"the gateway did not become ready: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield GatewayProcess(port, server.pid, log)
    finally:
        server.terminate()
        server.wait(timeout=30)
