"""``python -m ml_assets.engines spark up|down|status``: the local Apache Spark lane.

``make spark-up`` / ``make spark-down`` call this. The settings (ports, folders) come from the
environment as everywhere else (``ml_assets.deployments``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from ml_assets.deployments import DeploymentError, current_settings
from ml_assets.engines.errors import EngineError
from ml_assets.engines.spark_cluster import SparkCluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engine", choices=["spark"])
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cluster = SparkCluster(current_settings().spark_cluster)
        started = time.perf_counter()
        if args.action == "up":
            fresh = cluster.start()
            print(
                f"spark lane {'started' if fresh else 'already running'} in "
                f"{time.perf_counter() - started:.1f} s: {cluster.config.remote}"
            )
            print(json.dumps(cluster.status(), indent=1))
        elif args.action == "down":
            stopped = cluster.stop()
            seconds = time.perf_counter() - started
            print(f"spark lane stopped: {stopped} process(es) in {seconds:.1f} s")
        else:
            status = cluster.status()
            print(json.dumps(status, indent=1))
            return 0 if status["healthy"] else 3
    except (EngineError, DeploymentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
