"""The real gateway process under load and abuse (marked ``abuse``: ``make abuse`` runs these,
``make test`` leaves them out, CI runs both).

- 10,000 requests at concurrency 8 on 127.0.0.1 while the config file is replaced by garbage,
  an empty file, a config naming a model version that does not exist, and a valid canary
  config: every request is answered 200, by the old models until a valid config loads.
- A 56 MB body, declared or streamed, is refused with 413 and the process's memory stays flat.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import statistics
import time

import dagster as dg
import pytest

from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets_tests.churn import churn_classifier_version, churn_endpoint_config
from ml_assets_tests.defs.conftest import instance_at
from ml_assets_tests.gateway_process import get_json, running_gateway

pytestmark = pytest.mark.abuse

INVOKE = f"/serving-endpoints/{CHURN_CLASSIFIER.endpoint}/invocations"
REQUESTS, CONCURRENCY = 10_000, 8
BIG = 56 * 1024 * 1024
MEMORY_GROWTH_ALLOWED = 24 * 1024 * 1024  # well under the 56 MB body


def _post_raw(port: int, body_size: int, *, declare_length: bool) -> bytes:
    """POST ``body_size`` bytes, declared by Content-Length or chunked, stopping as soon as
    the server answers (as a careful client does); returns the answer's first bytes."""
    header = f"POST {INVOKE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    header += (
        f"Content-Length: {body_size}\r\n\r\n"
        if declare_length
        else "Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b'{"dataframe_records": [' + b" " * (64 * 1024 - 23)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(header.encode())
        sent = 0
        while sent < body_size:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            piece = chunk if declare_length else b"%x\r\n%s\r\n" % (len(chunk), chunk)
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.settimeout(30)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < int(
            _header(answer, b"content-length") or 0
        ):
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
        return answer


def _header(response: bytes, name: bytes) -> bytes | None:
    for line in response.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def test_a_huge_body_is_refused_with_413_and_memory_stays_flat(home):
    with running_gateway(home) as gateway:
        before = gateway.rss_bytes()
        for declare_length in (True, False):
            answer = _post_raw(gateway.port, BIG, declare_length=declare_length)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert b"REQUEST_TOO_LARGE" in answer
        grown = gateway.rss_bytes() - before
        assert grown < MEMORY_GROWTH_ALLOWED, f"RSS grew by {grown / 1e6:.0f} MB"
        assert get_json(gateway.port, "/ready")["ready"]  # and it still serves


async def _client(port: int, queue: asyncio.Queue, results: list) -> None:
    """One keep-alive HTTP/1.1 connection sending requests one after the other. Hand-rolled
    (a few lines of asyncio) so that the client costs little CPU beside the server."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while not queue.empty():
            i = queue.get_nowait()
            body = b'{"dataframe_records": [{"user_id": %d}]}' % (i % 400)
            request = (
                b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: soak-%d\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            ) % (INVOKE.encode(), i, len(body), body)
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(_header(head + b"\r\n", b"content-length") or 0)
            await reader.readexactly(length)
            status = int(head.split(b" ", 2)[1])
            served = (_header(head + b"\r\n", b"served-model-name") or b"").decode()
            results.append((status, time.perf_counter() - started, served))
    finally:
        writer.close()


async def _load(port: int, results: list[tuple[int, float, str]]) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(REQUESTS):
        queue.put_nowait(i)
    await asyncio.gather(*(_client(port, queue, results) for _ in range(CONCURRENCY)))


async def _replace_config(path, versions: list[bytes], pause_s: float) -> None:
    for content in versions:
        await asyncio.sleep(pause_s)
        path.write_bytes(content)  # in place, not atomic: a reader may see it half-written


async def _soak(port: int, path, versions: list[bytes]) -> list[tuple[int, float, str]]:
    results: list[tuple[int, float, str]] = []
    await asyncio.gather(_load(port, results), _replace_config(path, versions, pause_s=2.5))
    return results


def test_ten_thousand_requests_all_answered_while_the_config_is_replaced_by_garbage(
    home, resources, record_property
):
    path = home / "serving" / f"{CHURN_CLASSIFIER.endpoint}.json"
    champion_only = path.read_bytes()
    with instance_at(home) as instance:  # a second version: the config gains a canary
        for asset in (churn_classifier_version, churn_endpoint_config):
            assert dg.materialize([asset], resources=resources, instance=instance).success
    canary = path.read_bytes()
    missing_version = json.loads(canary)
    missing_version["config"]["served_entities"][0]["entity_version"] = "999"
    path.write_bytes(champion_only)

    with running_gateway(home) as gateway:
        versions = [
            b'{"name": "churn_classifier", "config": {"served_ent',  # half written
            b"",
            json.dumps(missing_version).encode(),
            canary,
        ]
        started = time.perf_counter()
        results = asyncio.run(_soak(gateway.port, path, versions))
        seconds = time.perf_counter() - started
        ready = get_json(gateway.port, "/ready")
        log = gateway.log.read_text()

    statuses = [status for status, _, _ in results]
    latencies_ms = sorted(1000 * latency for _, latency, _ in results)
    p50 = statistics.median(latencies_ms)
    p99 = latencies_ms[int(0.99 * len(latencies_ms)) - 1]
    for name, value in {
        "requests": len(results),
        "seconds": round(seconds, 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "requests_per_second": round(len(results) / seconds),
    }.items():
        record_property(name, value)
    print(f"soak: {len(results)} requests in {seconds:.1f} s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")

    assert len(results) == REQUESTS
    assert {s for s in statuses if not 200 <= s < 300} == set()
    assert set(ready["served_entities"]) == {"churn_classifier-1", "churn_classifier-2"}
    assert ready["last_reload_error"] is None
    served = {name for _, _, name in results}
    assert served == {"churn_classifier-1", "churn_classifier-2"}  # the canary took traffic
    # each bad file was tried, refused, and the old models kept serving
    assert log.count("not loaded, still serving the previous one") >= 3
    assert "Traceback" not in log
