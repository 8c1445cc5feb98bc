"""Replay request traffic against the real gateway (``make serve``'s process), so that the
inference log has real rows: the demo's stand-in for an application calling the endpoint.

The traffic covers the scoring days (``replay_days``: the days the batch scored, from the
champion's test window to the newest), so that the outcomes of logged answers mature inside
the demo's data and the model-quality job and the canary verdict have real rows to judge.
The store holds one row per user, so the gateway of a replay reads a store of its own
(``ReplayStore``): before each day's traffic it is published with the rows a publish on that
day stored (``rows_as_of``), the gateway's data clock follows it (``/ready``'s ``as_of``), and
a shadow's backlog drains before the next day is published.

The gateway is started as its own process on a free port of 127.0.0.1 and stopped with
SIGTERM (a clean shutdown: its inference log is drained before it exits). The traffic is
bounded (a number of requests, a few at a time) and seeded: single-user requests for users of
the online store, each with an ``X-Request-Id``, and about one in a hundred malformed (a user id
given as a string), as a real client sends, so that refusals are logged too.
"""

from __future__ import annotations

import dataclasses
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
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pyspark.sql import functions as F

from ml_assets.lib.features import user_activity
from ml_assets.lib.lakehouse import TableSpec
from ml_assets.lib.serving.online import online_frame, rows_as_of
from ml_assets.lib.serving.user_features import RESOLVED_LOOKUPS
from ml_assets.resources.online_store import OnlineStore

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
    days: tuple[str, ...] = ()  # the feature days replayed, when the replay was by day

    def __add__(self, other: Replayed) -> Replayed:
        return Replayed(
            self.requests + other.requests,
            dict(Counter(self.by_status) + Counter(other.by_status)),
            dict(Counter(self.by_served_entity) + Counter(other.by_served_entity)),
            self.seconds + other.seconds,
            self.days + other.days,
        )

    def describe(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status.items()))
        entities = ", ".join(f"{e} {n}" for e, n in sorted(self.by_served_entity.items()))
        over = f" over {len(self.days)} days {self.days[0]}..{self.days[-1]}" if self.days else ""
        return (
            f"{self.requests} requests{over} in {self.seconds:.1f} s (status {statuses}; "
            f"answered by {entities or 'none'})"
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
    first: int = 0,
) -> Replayed:
    """Send ``requests`` single-user requests, ``concurrency`` at a time; their ids are
    ``replay-<seed>-<first + i>`` (every hundredth one, by that number, is malformed)."""
    if not user_ids:
        raise ValueError("No users to send requests for: the online store is empty.")
    rng = random.Random(seed)
    path = f"/serving-endpoints/{endpoint}/invocations"
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    bodies = []
    for i in range(first, first + requests):
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


def replay_days(scored: Sequence[pd.Timestamp], at_most: int) -> list[pd.Timestamp]:
    """At most ``at_most`` of the scoring days, evenly spaced, the first and the newest kept."""
    days = sorted(set(scored))
    if at_most < 1:
        raise ValueError(f"at_most must be at least 1, found {at_most}.")
    if len(days) <= at_most:
        return days
    if at_most == 1:
        return days[-1:]
    step = (len(days) - 1) / (at_most - 1)
    return [days[round(i * step)] for i in range(at_most)]


def scoring_days(predictions: TableSpec, lakehouse) -> list[pd.Timestamp]:
    """The days a model's batch scored (its predictions table's ``scored_at``)."""
    times = lakehouse.read(predictions).select("scored_at").distinct().toPandas()["scored_at"]
    return sorted(pd.to_datetime(times, utc=True))


def split(total: int, parts: int) -> list[int]:
    """``total`` requests over ``parts`` days, as evenly as whole requests go."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@dataclass
class ReplayStore:
    """The online store a replay's gateway reads, published day by day with what the daily
    publish stored on that day. The feature history is read once, bounded: a table with a
    lookback from that far before the first day (an older row would be stale anyway)."""

    store: OnlineStore
    history: dict[str, pd.DataFrame] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, store: OnlineStore, lakehouse, days: Sequence[pd.Timestamp]) -> ReplayStore:
        out = cls(store)
        first, last = min(days), max(days)
        for resolved in RESOLVED_LOOKUPS:
            contract, lookback = resolved.contract, resolved.lookup.lookback_window
            spec = contract.table_spec
            version = lakehouse.version(spec)
            if version is None:
                raise ValueError(f"{spec.name} does not exist: nothing to replay against.")
            at = F.col(contract.timestamp_key)
            rows = lakehouse.read(spec, version=version).where(at <= F.lit(last.to_pydatetime()))
            if lookback is not None:
                rows = rows.where(at >= F.lit((first - lookback).to_pydatetime()))
            out.history[str(contract.name)] = rows.toPandas()
            out.versions[str(contract.name)] = version
        return out

    def publish(self, day: pd.Timestamp) -> list[int]:
        """Store the rows a publish on ``day`` stored; the users active within the activity
        lookback before it (the ones an application would be asked about)."""
        active: list[int] = []
        for resolved in RESOLVED_LOOKUPS:
            contract = resolved.contract
            name = str(contract.name)
            rows = rows_as_of(self.history[name], contract, day.to_pydatetime())
            self.store.publish(contract, online_frame(rows, contract), self.versions[name])
            if contract.name == user_activity.CONTRACT.name:
                lookback = resolved.lookup.lookback_window
                recent = pd.to_datetime(rows[contract.timestamp_key], utc=True)
                recent = recent >= day - lookback if lookback is not None else recent.notna()
                active = sorted(rows.loc[recent, contract.entity_keys[0]].astype(int).tolist())
        return active


def ready_state(port: int, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, body, _ = _call(port, "GET", "/ready", headers=headers)
    if status != 200:
        raise RuntimeError(f"the gateway on {port} is not ready: {status} {body[:300]!r}")
    return json.loads(body)


def wait_for(port: int, done, what: str, token: str | None = None, seconds: float = 300) -> dict:
    """Poll ``/ready`` until ``done(state)``; a RuntimeError naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        state = ready_state(port, token)
        if done(state):
            return state
        if time.monotonic() > deadline:
            raise RuntimeError(f"the gateway on {port}: {what} not seen in {seconds} s: {state}")
        time.sleep(0.1)


def clock_at(day: pd.Timestamp):
    """``/ready`` says the gateway's data clock reads ``day``."""
    return lambda state: "as_of" in state and pd.Timestamp(state["as_of"]) == day


def shadow_drained(state: dict) -> bool:
    """``/ready`` says every copy queued for the shadow was scored (or failed), or none was."""
    shadow = state.get("shadow")
    if not shadow:
        return True
    return shadow["scored"] + shadow["failed"] >= shadow["submitted"] or not shadow["alive"]


def replay_past_days(
    port: int,
    endpoint: str,
    store: ReplayStore,
    days: Sequence[pd.Timestamp],
    requests: int,
    *,
    token: str | None = None,
) -> Replayed:
    """Each day: publish its rows, wait for the gateway's clock to read it, send its share of
    ``requests``, and wait for the shadow to finish the day before the next one."""
    out = Replayed(0, {}, {}, 0.0)
    for day, count in zip(days, split(requests, len(days)), strict=True):
        users = store.publish(day)
        wait_for(port, clock_at(day), f"its clock at {day.isoformat()}", token)
        if count and users:
            sent = replay(port, endpoint, users, count, token=token, first=out.requests)
            out += dataclasses.replace(sent, days=(day.date().isoformat(),))
        wait_for(port, shadow_drained, "its shadow drained", token)
    return out
