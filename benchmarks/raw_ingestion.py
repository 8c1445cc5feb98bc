"""Raw ingestion throughput, side by side with a parse-only anchor on the same engine.

    .venv/bin/python benchmarks/raw_ingestion.py [--scale demo|tiny]

Lands the demo source into a temporary ML_ASSETS_HOME, then measures in one run:
  anchor  -- the embedded engine reading every landed event line and parsing it
             (``from_json`` to a map, count of parsed lines): the floor any ingestion pays;
             run once untimed, then the median of three (warm, as the ingestion runs);
  ingest  -- ``raw/users`` then ``raw/events`` over all partitions in one Dagster run:
             parse, validate, quarantine, deduplicate, write both Delta tables, read back.
Reports lines per second for each, the ratio ingest / anchor (time), and where raw/events'
time went: its steps as the asset records them (``seconds_by_step``), and the rest of the
run (reading back, each day's metadata, Dagster's events).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg
from pyspark.sql import functions as F

from ml_assets.defs.partitions import daily_partitions
from ml_assets.defs.raw.assets import build_raw_events, raw_users
from ml_assets.deployments import build_resources, current_settings
from ml_assets.lib.source import SCALES, land
from ml_assets.programs.reporting import materialization_metadata

ANCHOR_RUNS = 3


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

        lines = spark.read.text(str(Path(settings.landing_dir) / "events"))
        parsed = lines.select(F.from_json("value", "map<string,string>").alias("j"))
        anchor_lines = parsed.select(F.count("j")).first()[0]  # untimed: warms the engine
        anchor_times = []
        for _ in range(ANCHOR_RUNS):
            started = time.perf_counter()
            parsed.select(F.count("j")).first()
            anchor_times.append(time.perf_counter() - started)
        anchor_s = statistics.median(anchor_times)

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
        steps = materialization_metadata(result, "raw/events")["seconds_by_step"]

    n = summary.event_lines
    print(
        f"scale={args.scale}: {n:,} event lines, {summary.change_lines:,} change lines "
        f"({len(summary.dates)} days); landing took {land_s:.1f} s"
    )
    print(
        f"anchor  parse-only      {anchor_s:6.1f} s  {n / anchor_s:>10,.0f} lines/s "
        f"({anchor_lines:,} parsed; runs {', '.join(f'{t:.2f}' for t in anchor_times)} s)"
    )
    print(f"ingest  raw/events      {ingest_s:6.1f} s  {n / ingest_s:>10,.0f} lines/s")
    for step, seconds in steps.items():
        print(f"          {step:22s}{seconds:6.1f} s")
    rest = ingest_s - sum(steps.values())
    print(f"          {'rest of the run':22s}{rest:6.1f} s  (read back, per-day metadata, Dagster)")
    print(
        f"ingest  raw/users       {users_s:6.1f} s  {summary.change_lines / users_s:>10,.0f} "
        "lines/s"
    )
    print(f"ratio   ingest / anchor  {ingest_s / anchor_s:.2f}x the time of parsing alone")


if __name__ == "__main__":
    main()
