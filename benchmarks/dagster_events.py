"""Dagster's event storage per event, the project's instance beside Dagster's own, in one run.

    .venv/bin/python benchmarks/dagster_events.py [--days 212] [--repeat 3] [--dir PATH]

A partition-range run of two daily assets (single-run backfill policy) records a planned and
a materialization event per asset and day, as the demo job does for its partitioned assets,
and does no work of its own: its time is the storage's. Timed, alternating, each on a new
instance directory (``--dir``: where the files go; the default temporary directory is on
disk on most machines, ``/dev/shm`` is memory):

  dagster  -- ``storage: sqlite`` (Dagster's ``DagsterSqliteStorage``), the anchor;
  project  -- ``ml_assets.programs.instance.local_instance`` (``deploy/dagster.yaml``'s storage);
  memory   -- ``DagsterInstance.ephemeral()``: no files, the floor.

Reports milliseconds per event (median of the repeats) and the ratios to the anchor.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg

from ml_assets.programs.instance import local_instance


def graph(days: int) -> tuple[list[dg.AssetsDefinition], list[str]]:
    partitions = dg.DailyPartitionsDefinition(start_date="2025-10-01")
    keys = partitions.get_partition_keys()[:days]

    @dg.asset(partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def upstream(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"days": len(context.partition_keys)})

    @dg.asset(
        partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run(), deps=[upstream]
    )
    def downstream(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"days": len(context.partition_keys)})

    return [upstream, downstream], keys


def instance(kind: str, directory: Path) -> dg.DagsterInstance:
    if kind == "dagster":
        directory.mkdir(parents=True)
        return dg.DagsterInstance.local_temp(str(directory))
    if kind == "project":
        return local_instance(directory)
    return dg.DagsterInstance.ephemeral()


def one_run(kind: str, root: Path, n: int, days: int) -> tuple[float, int]:
    """Seconds per event and the number of events of one run on a new instance."""
    assets, keys = graph(days)
    with instance(kind, root / f"{kind}-{n}") as store:
        started = time.perf_counter()
        result = dg.materialize(
            assets,
            instance=store,
            tags={
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            },
        )
        seconds = time.perf_counter() - started
        events = len(store.all_logs(result.run_id))
        partitions = store.get_materialized_partitions(assets[1].key)
    if not result.success or len(partitions) != days:
        raise SystemExit(f"{kind}: the run failed or lost partitions ({len(partitions)}/{days})")
    return seconds / events, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=212, help="partitions per asset (demo: 212)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", help="where the instances' files go (default: a temporary dir)")
    args = parser.parse_args()
    kinds = ["dagster", "project", "memory"]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        one_run("memory", Path(tmp), -1, 2)  # imports and first-run costs outside the timings
        per_event: dict[str, list[float]] = {kind: [] for kind in kinds}
        for n in range(args.repeat):
            for kind in kinds:
                seconds, events = one_run(kind, Path(tmp), n, args.days)
                per_event[kind].append(seconds)
        print(
            f"{events} events a run ({args.days} days x 2 assets),"
            f" {args.repeat} runs each, on {tmp}"
        )
    anchor = statistics.median(per_event["dagster"])
    for kind in kinds:
        ms = statistics.median(per_event[kind])
        runs = " ".join(f"{s * 1000:.1f}" for s in per_event[kind])
        print(f"{kind:8s} {ms * 1000:6.2f} ms/event  ({runs})  {ms / anchor:.2f}x dagster")


if __name__ == "__main__":
    main()
