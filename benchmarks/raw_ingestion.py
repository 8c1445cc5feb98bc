"""Raw ingestion throughput, side by side with a parse-only anchor on the same engine.

    .venv/bin/python benchmarks/raw_ingestion.py [--scale demo|tiny]

Lands the demo source into a temporary ML_ASSETS_HOME, then measures in one run:
  anchor  -- the embedded engine reading every landed event line and parsing it
             (``from_json`` to a map, count of parsed lines): the floor any ingestion pays;
  ingest  -- ``raw/users`` then ``raw/events`` over all partitions in one Dagster run:
             parse, validate, quarantine, deduplicate, write both Delta tables, read back.
Reports lines per second for each and the ratio ingest / anchor (time).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dagster as dg
from pyspark.sql import functions as F

from ml_assets.defs.partitions import daily_partitions
from ml_assets.defs.raw.assets import build_raw_events, raw_users
from ml_assets.deployments import build_resources, current_settings
from ml_assets.lib.source import SCALES, land


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="demo")
    args = parser.parse_args()
    source = SCALES[args.scale]
    with tempfile.TemporaryDirectory() as tmp:
        settings = current_settings({"ML_ASSETS_HOME": tmp, "ML_ASSETS_SCALE": args.scale})
        resources = build_resources(settings)
        started = time.perf_counter()
        summary = land(source, settings.landing_dir)
        land_s = time.perf_counter() - started
        spark = resources["spark"].get_session()
        spark.range(1).count()  # start the engine outside the timings

        started = time.perf_counter()
        lines = spark.read.text(str(Path(settings.landing_dir) / "events"))
        parsed = lines.select(F.from_json("value", "map<string,string>").alias("j"))
        anchor_lines = parsed.select(F.count("j")).first()[0]
        anchor_s = time.perf_counter() - started

        events = build_raw_events(daily_partitions(source.start_date, source.end_date))
        keys = events.partitions_def.get_partition_keys()
        started = time.perf_counter()
        dg.materialize([raw_users], resources=resources, instance=dg.DagsterInstance.ephemeral())
        users_s = time.perf_counter() - started
        started = time.perf_counter()
        result = dg.materialize(
            [events],
            resources=resources,
            instance=dg.DagsterInstance.ephemeral(),
            tags={
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            },
        )
        ingest_s = time.perf_counter() - started
        assert result.success

    n = summary.event_lines
    print(
        f"scale={args.scale}: {n:,} event lines, {summary.change_lines:,} change lines "
        f"({len(summary.dates)} days); landing took {land_s:.1f} s"
    )
    print(
        f"anchor  parse-only      {anchor_s:6.1f} s  {n / anchor_s:>10,.0f} lines/s "
        f"({anchor_lines:,} parsed)"
    )
    print(f"ingest  raw/events      {ingest_s:6.1f} s  {n / ingest_s:>10,.0f} lines/s")
    print(
        f"ingest  raw/users       {users_s:6.1f} s  {summary.change_lines / users_s:>10,.0f} "
        "lines/s"
    )
    print(f"ratio   ingest / anchor  {ingest_s / anchor_s:.2f}x the time of parsing alone")


if __name__ == "__main__":
    main()
