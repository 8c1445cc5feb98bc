"""Serving: the gateway (with the online feature lookup) beside `mlflow models serve` (the same
champion model, given the full feature row, no lookup), in one run; and online lookups per key
in a store of 1M keys.

    .venv/bin/python benchmarks/serving.py [--home .ml_assets] [--seconds 10] [--requests 1000]
                                           [--keys 1000000]

Needs a materialized home (`make run`: champion, online store, endpoint config). Starts the
servers on free ports on 127.0.0.1, each gateway in a home of its own serving the champion
alone, warms them up, then for concurrency 1, 8 and 32 loads each for ``--seconds`` with
`wrk` (C, not Python, so that the client does not dominate; fetched once from Debian's
packages, pinned: benchmarks/wrk.py), sending ``--requests`` recorded single-record bodies in
turn over keep-alive connections, and reports p50/p99/p99.9 latency and requests per second,
and the gateway/MLflow ratios (targets: gateway p99 <= 5 ms at concurrency 1, throughput >= 3x
MLflow's at 8); the gateway again with its inference log off, to measure what logging adds
(target: at most 1 ms at p99); and the gateway with a shadow (the champion again, routed at
0 %: every request is copied to it and scored after the answer), to measure what a shadow adds
to the answer. Every answer must be a 200. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import wrk

from ml_assets.deployments import REPO_ROOT, build_resources, current_settings
from ml_assets.lib.features import user_activity
from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER, ENCODING
from ml_assets.lib.models.encoding import records_frame
from ml_assets.lib.serving.online import online_frame
from ml_assets.lib.serving.user_features import LOOKUP_CONTRACTS, user_records
from ml_assets.names import CHURN_MODEL_NAME
from ml_assets.programs.gateway import gateway_for
from ml_assets.programs.replay import free_port, shadow_drained, wait_for
from ml_assets.resources.online_store import SqlOnlineStore

LEVELS = (1, 8, 32)


def wait_ready(port: int, path: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server on {port} not ready after {seconds} s")


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def online_lookup(keys: int, samples: int = 2000) -> dict[str, float]:
    """p50/p99 of one-key reads from a SQLite store holding ``keys`` user_activity rows."""
    root = Path(tempfile.mkdtemp(prefix="ml_assets_online_bench_"))
    try:
        store = SqlOnlineStore(database_url=f"sqlite:///{root / 'online.db'}")
        rng = np.random.default_rng(0)
        contract = user_activity.CONTRACT
        rows = pd.DataFrame({"user_id": np.arange(keys), "feature_ts": pd.Timestamp("2026-05-01")})
        for name in contract.feature_names:
            rows[name] = rng.integers(0, 100, keys).astype("float64")
        started = time.perf_counter()
        store.publish(contract, online_frame(rows, contract), delta_version=0)
        publish_s = time.perf_counter() - started
        picks = rng.integers(0, keys, samples)
        timings = []
        for key in picks:
            started = time.perf_counter()
            found = store.read(contract, [int(key)])
            timings.append((time.perf_counter() - started) * 1000)
            assert (int(key),) in found
        return {
            "keys": keys,
            "publish_s": publish_s,
            "p50_ms": float(np.percentile(timings, 50)),
            "p99_ms": float(np.percentile(timings, 99)),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench_home(home: Path, endpoint: dict, shadow: bool) -> Path:
    """A home that shares everything with ``home`` (links) but its ``serving/``, whose
    endpoint config serves the champion alone (whatever canary the user's config has), and
    with ``shadow`` the champion again as a shadow at 0 %: the benchmark's configs and logs
    stay apart from the user's."""
    bench = Path(tempfile.mkdtemp(prefix="serving_bench_"))
    for entry in home.iterdir():
        if entry.name != "serving":
            (bench / entry.name).symlink_to(entry)
    champion = endpoint["config"]["served_entities"][0]
    copy = {**champion, "name": f"{champion['name']}-shadow"}
    routes = [{"served_entity_name": champion["name"], "traffic_percentage": 100}]
    if shadow:
        routes.append({"served_entity_name": copy["name"], "traffic_percentage": 0})
    endpoint = {
        **endpoint,
        "config": {
            "served_entities": [champion, copy] if shadow else [champion],
            "traffic_config": {"routes": routes},
        },
    }
    (bench / "serving").mkdir()
    (bench / "serving" / f"{CHURN_CLASSIFIER.endpoint}.json").write_text(json.dumps(endpoint))
    return bench


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default=str(REPO_ROOT / ".ml_assets"))
    parser.add_argument(
        "--requests", type=int, default=1000, help="distinct request bodies, sent in turn"
    )
    parser.add_argument("--seconds", type=float, default=10, help="per server and level")
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args()
    binary = wrk.ensure_wrk(REPO_ROOT / ".venv" / "tools" / "wrk")
    settings = current_settings({**os.environ, "ML_ASSETS_HOME": args.home})
    resources = build_resources(settings)
    store = resources["online_store"].process_config_and_initialize()  # resolves EnvVar
    tracking = resources["mlflow_tracking"]
    user_ids = list(store.read_keys(user_activity.CONTRACT))
    if not user_ids:
        sys.exit(f"{args.home} has no online features: run `make run` first.")

    # the same users' full feature rows, for MLflow's server (which cannot look them up)
    gateway = gateway_for(settings)
    at = gateway.as_of()

    rng = random.Random(0)
    picked = [rng.choice(user_ids) for _ in range(args.requests)]
    rows = {str(c.name): store.read(c, list(set(picked))) for c in LOOKUP_CONTRACTS}
    full = records_frame(user_records(picked, at, rows), ENCODING)
    gateway_bodies = [json.dumps({"dataframe_records": [{"user_id": u}]}).encode() for u in picked]
    mlflow_bodies = [
        json.dumps({"dataframe_records": [r]}, default=str).encode()
        for r in full.astype(object).where(full.notna(), None).to_dict("records")
    ]

    env = {
        **os.environ,
        "ML_ASSETS_HOME": args.home,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env["MLFLOW_TRACKING_URI"] = tracking.tracking_uri()
    gateway_port, mlflow_port, unlogged_port = free_port(), free_port(), free_port()
    shadowed_port = free_port()
    deployed = json.loads(
        (Path(args.home) / "serving" / f"{CHURN_CLASSIFIER.endpoint}.json").read_text()
    )
    plain = bench_home(Path(args.home), deployed, shadow=False)
    shadowed = bench_home(Path(args.home), deployed, shadow=True)
    servers = [
        start(
            [sys.executable, "-m", "ml_assets.programs.gateway", "--port", str(gateway_port)],
            {**env, "ML_ASSETS_HOME": str(plain)},
        ),
        start(
            [sys.executable, "-m", "ml_assets.programs.gateway", "--port", str(unlogged_port)],
            {**env, "ML_ASSETS_HOME": str(plain), "ML_ASSETS_SERVING_INFERENCE_LOG": "0"},
        ),
        start(
            [sys.executable, "-m", "ml_assets.programs.gateway", "--port", str(shadowed_port)],
            {**env, "ML_ASSETS_HOME": str(shadowed)},
        ),
        start(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{CHURN_MODEL_NAME}@champion",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(mlflow_port),
                "-w",
                "1",
            ],
            env,
        ),
    ]
    try:
        wait_ready(gateway_port, "/ready", servers[0])
        wait_ready(unlogged_port, "/ready", servers[1])
        wait_ready(shadowed_port, "/ready", servers[2])
        wait_ready(mlflow_port, "/ping", servers[3])
        invocations = f"/serving-endpoints/{CHURN_CLASSIFIER.endpoint}/invocations"
        targets = {
            "gateway (with lookup)": (gateway_port, invocations, gateway_bodies),
            "gateway, no inference log": (unlogged_port, invocations, gateway_bodies),
            "gateway with a shadow": (shadowed_port, invocations, gateway_bodies),
            "mlflow models serve": (mlflow_port, "/invocations", mlflow_bodies),
        }
        url = {name: f"http://127.0.0.1:{port}{path}" for name, (port, path, _) in targets.items()}
        for name, (_, _, bodies) in targets.items():
            wrk.run(binary, url[name], bodies, 4, 2)  # warm-up
        results = {}
        for level in LEVELS:
            for name, (_, _, bodies) in targets.items():
                # no shadow work under another measurement
                wait_for(shadowed_port, shadow_drained, "its shadow drained", seconds=600)
                results[(name, level)] = wrk.run(binary, url[name], bodies, level, args.seconds)
    finally:
        for server in servers:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        for bench in (plain, shadowed):
            shutil.rmtree(bench)  # its links, its config and its log

    print(
        f"\nsingle-record requests from wrk, {args.seconds:g} s per server and level, "
        f"{args.requests} recorded bodies, scale {settings.scale}, {dt.date.today()}"
    )
    print(
        f"{'concurrency':>11}  {'server':<26} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>8} "
        f"{'req/s':>8} {'non-2xx':>8}"
    )
    for level in LEVELS:
        for name in targets:
            r = results[(name, level)]
            print(
                f"{level:>11}  {name:<26} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.p999_ms:>8.2f} "
                f"{r.rps:>8.1f} {r.non_2xx + r.socket_errors:>8}"
            )
        g, m = results[("gateway (with lookup)", level)], results[("mlflow models serve", level)]
        print(
            f"{'':>11}  ratio gateway/mlflow: p99 {g.p99_ms / m.p99_ms:.2f}, "
            f"throughput {g.rps / m.rps:.2f} (targets: p99 <= 5 ms at 1; throughput >= 3 at 8)"
        )
        u = results[("gateway, no inference log", level)]
        print(
            f"{'':>11}  inference log adds: p50 {g.p50_ms - u.p50_ms:+.2f} ms, "
            f"p99 {g.p99_ms - u.p99_ms:+.2f} ms (target: p99 <= +1 ms)"
        )
        h = results[("gateway with a shadow", level)]
        print(
            f"{'':>11}  a shadow adds: p50 {h.p50_ms - g.p50_ms:+.2f} ms, "
            f"p99 {h.p99_ms - g.p99_ms:+.2f} ms, throughput x{h.rps / g.rps:.2f}"
        )
    failed = {k: r for k, r in results.items() if r.non_2xx or r.socket_errors}
    if failed:
        raise SystemExit(f"answers that were not 200: {failed}")
    lookup = online_lookup(args.keys)
    print(
        f"\nonline lookup, one key of {lookup['keys']:,} (SQLite): p50 {lookup['p50_ms']:.3f} ms, "
        f"p99 {lookup['p99_ms']:.3f} ms (publishing them took {lookup['publish_s']:.1f} s)"
    )


if __name__ == "__main__":
    main()
