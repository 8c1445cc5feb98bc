"""Replay request traffic against the real gateway (``make serve``'s process), so that the
inference log has real rows: the demo's stand-in for an application calling the endpoint.

The gateway is started as its own process on a free port of 127.0.0.1 and stopped with
SIGTERM (a clean shutdown: its inference log is drained before it exits). The traffic is
bounded (a number of requests, a few at a time) and seeded: single-user requests for users of
the online store, each with an ``X-Request-Id``, and about one in a hundred malformed (a user id
given as a string), as a real client sends, so that refusals are logged too.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

READY_SECONDS = 180.0
MALFORMED_EVERY = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(port: int, method: str, path: str, body: bytes | None = None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.read(), dict(answer.getheaders())
    finally:
        connection.close()


@contextmanager
def gateway_process(
    endpoint: str, env: Mapping[str, str], log: Path, token: str | None = None
) -> Iterator[int]:
    """``python -m ml_assets.programs.gateway --endpoint <endpoint>`` on a free port, ready
    (its models loaded) when the block starts; SIGTERM and wait when it ends."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "ml_assets.programs.gateway", "--port", str(port)]
            + ["--endpoint", endpoint],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if server.poll() is not None:
                raise RuntimeError(
                    f"the gateway for {endpoint} exited with {server.returncode}: "
                    f"{log.read_text(errors='replace')[-2000:]}"
                )
            try:
                status, _, _ = _call(port, "GET", "/ready", headers=headers)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway for {endpoint} was not ready in {READY_SECONDS} s")
            time.sleep(0.3)
        yield port
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


@dataclass(frozen=True)
class Replayed:
    requests: int
    by_status: dict[int, int]
    by_served_entity: dict[str, int]
    seconds: float

    def describe(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))
        entities = ", ".join(f"{e} {n}" for e, n in sorted(self.by_served_entity.items()))
        return (
            f"{self.requests} requests in {self.seconds:.1f} s (status {statuses}; answered by "
            f"{entities or 'none'})"
        )


def replay(
    port: int,
    endpoint: str,
    user_ids: Sequence[int],
    requests: int,
    *,
    concurrency: int = 4,
    seed: int = 0,
    token: str | None = None,
) -> Replayed:
    """Send ``requests`` single-user requests, ``concurrency`` at a time."""
    if not user_ids:
        raise ValueError("No users to send requests for: the online store is empty.")
    rng = random.Random(seed)
    path = f"/serving-endpoints/{endpoint}/invocations"
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    bodies = []
    for i in range(requests):
        user = rng.choice(user_ids)
        value: object = str(user) if i % MALFORMED_EVERY == MALFORMED_EVERY - 1 else int(user)
        body = json.dumps({"dataframe_records": [{"user_id": value}]}).encode()
        bodies.append((body, {**headers, "X-Request-Id": f"replay-{seed}-{i}"}))

    def send(item) -> tuple[int, str | None]:
        status, _, answer_headers = _call(port, "POST", path, *item)
        return status, answer_headers.get("served-model-name")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answers = list(pool.map(send, bodies))
    return Replayed(
        requests=requests,
        by_status=dict(Counter(status for status, _ in answers)),
        by_served_entity=dict(Counter(served for _, served in answers if served)),
        seconds=time.perf_counter() - started,
    )
