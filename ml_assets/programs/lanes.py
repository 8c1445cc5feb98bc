"""Engine lanes must agree: a fingerprint of a whole run, and a comparison of two or more.

``make check ENGINE=...`` writes ``test-results/lane-<engine>.json``: every check's result,
every table's row count and content digest, each model's training set content hash (computed
on the engine) and champion test metrics. ``python -m ml_assets.programs.lanes compare A.json
B.json ...`` exits non-zero and names each difference when the lanes disagree.

A table's digest is computed here in Python, not on the engine, so that it does not depend on
the engine's hash functions: the SHA-256 of the column names and types and of the sorted rows,
each value in an exact text form (a double as ``float.hex``, so the last bit counts).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import decimal
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg
import pyarrow as pa
from pyspark.sql import DataFrame

from ml_assets.defs.metadata import table_key
from ml_assets.deployments import Settings
from ml_assets.engines.spark_cluster import SparkCluster, running
from ml_assets.lib.features.registry import CONTRACTS
from ml_assets.lib.lakehouse import TableSpec
from ml_assets.lib.models.catalog import MODELS
from ml_assets.lib.raw import EVENTS, EVENTS_QUARANTINE, USERS, USERS_QUARANTINE
from ml_assets.lib.serving.batch import predictions_table
from ml_assets.programs.reporting import materialization_metadata, run_check_results
from ml_assets.resources.spark import close_session


def main_tables() -> list[TableSpec]:
    """The Delta tables of the main job, upstream first."""
    return [
        USERS,
        USERS_QUARANTINE,
        EVENTS,
        EVENTS_QUARANTINE,
        *(c.table_spec for c in CONTRACTS.values()),
        *(
            table
            for model in MODELS.values()
            for table in (
                model.training_set.labels.table,
                model.training_set.table,
                predictions_table(model),
            )
        ),
    ]


@contextlib.contextmanager
def engine_lane(settings: Settings) -> Iterator[str | None]:
    """The lane's engine for the block: the ``spark`` lane's local cluster is started when it
    is not running, and stopped afterwards if this block started it. Yields the remote."""
    if settings.engine != "spark" or settings.spark_remote:
        yield settings.spark_remote
        return
    config = settings.spark_cluster
    with running(config):
        try:
            yield config.remote
        finally:
            close_session(config.remote)  # before the server goes away


def _exact(value: object) -> object:
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, dt.datetime | dt.date | decimal.Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _exact(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_exact(v) for v in value]
    return value


# types whose Python values _exact returns as they are: no call per value
_AS_THEY_ARE = (
    pa.types.is_integer,
    pa.types.is_boolean,
    pa.types.is_string,
    pa.types.is_large_string,
)


def table_digest(df: DataFrame) -> dict[str, object]:
    """Row count and an order-independent SHA-256 of a DataFrame's columns, types and rows.
    Every column counts: the tables hold no wall-clock time (predictions are stamped with the
    data's time), so two lanes' digests are equal only when every value is."""
    return arrow_digest(df.toArrow())


def arrow_digest(table: pa.Table) -> dict[str, object]:
    """``table_digest`` of an Arrow table: each row as JSON of its exact values, sorted."""
    columns = []
    for column in table.columns:
        values = column.to_pylist()
        as_they_are = any(test(column.type) for test in _AS_THEY_ARE)
        columns.append(values if as_they_are else [_exact(v) for v in values])
    lines = (json.dumps(list(row), separators=(",", ":")) for row in zip(*columns, strict=True))
    rows = sorted(lines)
    digest = hashlib.sha256(json.dumps([[f.name, str(f.type)] for f in table.schema]).encode())
    for line in rows:
        digest.update(line.encode() + b"\n")
    return {"rows": table.num_rows, "sha256": digest.hexdigest()}


def peak_rss_mib(pids: list[int]) -> float:
    """Summed peak resident memory (``VmHWM``) of processes, in MiB (Linux; 0 elsewhere)."""
    total_kib = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total_kib += sum(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")
        )
    return round(total_kib / 1024, 1)


def lane_peak_rss_mib(settings: Settings) -> dict[str, float]:
    """Peak memory of the lane's processes: this one (Sail runs in it), and on the spark lane
    the cluster's JVMs (master, workers, Spark Connect server, executors)."""
    memory = {"this_process": peak_rss_mib([os.getpid()])}
    if settings.engine == "spark" and not settings.spark_remote:
        jvms = [p.pid for p in SparkCluster(settings.spark_cluster).processes()]
        memory["spark_jvms"] = peak_rss_mib(jvms)
    return memory


def fingerprint(
    settings: Settings, result: dg.ExecuteInProcessResult, lakehouse, seconds: float
) -> dict[str, object]:
    checks = {
        f"{c.asset_key.to_user_string()}:{c.check_name}": {
            "passed": c.passed,
            "severity": c.severity.value,
        }
        for c in run_check_results(result)
    }
    tables = {}
    for spec in main_tables():
        if lakehouse.exists(spec):
            name = str(spec.name)
            tables[name] = table_digest(lakehouse.read(spec))
    hashes, metrics = {}, {}
    for model in MODELS.values():
        key = table_key(model.training_set.table_name).to_user_string()
        hashes[model.name] = (materialization_metadata(result, key) or {}).get("content_hash")
        champion = materialization_metadata(result, "/".join(model.champion_key)) or {}
        metrics |= {
            f"{model.name}:{k}": v
            for k, v in sorted(champion.items())
            if k.startswith("champion_test_")
        }
    return {
        "engine": settings.engine,
        "scale": settings.scale,
        "success": result.success,
        "seconds": round(seconds, 1),
        "peak_rss_mib": lane_peak_rss_mib(settings),
        "checks": dict(sorted(checks.items())),
        "tables": tables,
        "training_set_content_hashes": hashes,
        "champion_test_metrics": metrics,
    }


def compare(a: Mapping, b: Mapping) -> list[str]:
    """Every difference between two lanes' fingerprints, as sentences."""
    out = []
    lanes = f"{a['engine']} vs {b['engine']}"
    if a.get("success") != b.get("success"):
        out.append(f"{lanes}: success {a.get('success')!r} != {b.get('success')!r}")
    for section in ("checks", "tables", "training_set_content_hashes", "champion_test_metrics"):
        left, right = a.get(section, {}), b.get(section, {})
        for name in sorted(set(left) | set(right)):
            if left.get(name) != right.get(name):
                out.append(f"{lanes}: {section} {name}: {left.get(name)} != {right.get(name)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare the fingerprints of engine lanes.")
    parser.add_argument("action", choices=["compare"])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if len(args.files) < 2:
        parser.error("compare needs at least two fingerprint files")
    prints = [json.loads(p.read_text()) for p in args.files]
    differences = [d for other in prints[1:] for d in compare(prints[0], other)]
    lanes = ", ".join(
        f"{p['engine']} {p['seconds']} s, peak {sum(p.get('peak_rss_mib', {}).values()):,.0f} MiB"
        for p in prints
    )
    for line in differences:
        print(line)
    base = prints[0]
    print(
        f"lanes compared ({lanes}): {len(base['checks'])} checks, {len(base['tables'])} tables "
        f"({sum(t['rows'] for t in base['tables'].values())} rows): "
        + ("identical" if not differences else f"{len(differences)} differences")
    )
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
