# ruff: noqa: E402  (the environment below is set before anything imported here loads XGBoost)
from __future__ import annotations

import os

# Two pytest-xdist workers on 2 cores: XGBoost's OpenMP threads, by default, spin on their core
# between parallel regions, and a fit in one worker (or in a run it started) then takes the core
# the other worker's fit is waiting for. Measured with the six churn trials of the demo run in
# two processes at once: 18.4 s each by default, 5.3 s each with the threads made to sleep
# (alone, 3.3 s by default and 6.3 s passive, so `make run` keeps the default). The two files
# with whole-graph runs, side by side on two workers: 298 and 245 s, 205 and 203 s passive.
# libgomp reads this once, when it is loaded; the runs the tests start inherit it.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import shutil
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from ml_assets.programs.signals import keep_sigterm_deliverable
from ml_assets.resources.lakehouse import LocalDeltaLakehouse
from ml_assets.resources.spark import EmbeddedSailSpark
from ml_assets_tests import postgres
from ml_assets_tests.lanes import spark_lane  # noqa: F401  (the spark lane's cluster fixture)

# Test homes (Delta tables, SQLite stores, a copy of the tiny graph per test) in memory when the
# machine has room: on disk, the ~60 copies of the 110 MB tiny graph and the stores' fsyncs
# outrun writeback, and each copy slows from 0.3 s to over 2 s as the session goes on.
RAM_TEMP_ROOT = Path("/dev/shm")
RAM_TEMP_MIN_FREE = 8 * 2**30


def pytest_configure(config: pytest.Config) -> None:
    """Put pytest's temporary root on ``/dev/shm`` unless the caller chose one (``--basetemp``,
    ``PYTEST_DEBUG_TEMPROOT``) or it has less than 8 GiB free (a container's 64 MiB default).
    Keep SIGTERM deliverable to the processes the tests start after their Dagster runs, in the
    controller and in each worker: a CI runner starts the suite with SIGINT ignored."""
    keep_sigterm_deliverable()
    if config.option.basetemp or "PYTEST_DEBUG_TEMPROOT" in os.environ:
        return
    if RAM_TEMP_ROOT.is_dir() and shutil.disk_usage(RAM_TEMP_ROOT).free >= RAM_TEMP_MIN_FREE:
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(RAM_TEMP_ROOT)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files marked ``whole_graph`` first, each file's tests kept together and in order.

    ``make test`` hands whole files to its two workers in collection order
    (``--no-loadscope-reorder``): a minute-long file handed out last would leave the other
    worker idle while it runs.
    """
    items.sort(key=lambda item: item.get_closest_marker("whole_graph") is None)


@pytest.fixture(scope="session")
def spark_resource() -> EmbeddedSailSpark:
    return EmbeddedSailSpark()


@pytest.fixture(scope="session")
def spark(spark_resource: EmbeddedSailSpark) -> SparkSession:
    """The process's embedded Sail session, shared by every test (started once)."""
    return spark_resource.get_session()


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server (trust authentication: any password is accepted)."""
    try:
        with postgres.start() as url:
            yield url
    except postgres.PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server for this test: {exc}")


@pytest.fixture
def lakehouse(tmp_path, spark_resource) -> LocalDeltaLakehouse:
    return LocalDeltaLakehouse(warehouse_dir=str(tmp_path / "warehouse"), spark=spark_resource)
