"""A write killed with SIGKILL in the middle leaves the table at its previous version, readable
from a fresh process; the files it left behind are removed by the vacuum, and nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml_assets.resources.lakehouse import LocalDeltaLakehouse, RetentionTooShortError
from ml_assets_tests.resources.killed_writer import SPEC, rows

REPO_ROOT = Path(__file__).resolve().parents[2]
INITIAL_ROWS = 200_000
WRITE_ROWS = 3_000_000


def _data_files(table_dir: Path) -> set[Path]:
    """Every file but the log: parquet files, and the half-written ones a writer renames into
    place when they are complete (``part-....parquet#1`` on a local file system)."""
    return {p for p in table_dir.rglob("*") if p.is_file() and "_delta_log" not in p.parts}


def _kill_mid_write(warehouse: Path, mode: str, table_dir: Path) -> None:
    before = _data_files(table_dir)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ml_assets_tests.resources.killed_writer",
            str(warehouse),
            mode,
            str(WRITE_ROWS),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert child.stdout.readline().strip() == b"writing"
        deadline = time.monotonic() + 120
        while not (_data_files(table_dir) - before):  # its first file: nothing is committed
            assert child.poll() is None, "the write ended before it could be killed"
            assert time.monotonic() < deadline, "the write wrote no file within 120 s"
            time.sleep(0.005)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert b"committed" not in child.stdout.read()


def _fresh_process_count(warehouse: Path) -> str:
    """Row count and version read by a new process: nothing of the killed one survives."""
    code = (
        "import sys\n"
        "from ml_assets.resources.lakehouse import LocalDeltaLakehouse\n"
        "from ml_assets.resources.spark import EmbeddedSailSpark\n"
        "from ml_assets_tests.resources.killed_writer import SPEC\n"
        "lh = LocalDeltaLakehouse(warehouse_dir=sys.argv[1], spark=EmbeddedSailSpark())\n"
        "table = lh.read(SPEC)\n"
        "print(lh.version(SPEC), table.count(), table.agg({'id': 'sum'}).first()[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(warehouse)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_a_write_killed_midway_leaves_the_previous_version_and_vacuum_removes_its_files(
    tmp_path, spark_resource, mode
):
    warehouse = tmp_path / "warehouse"
    lakehouse = LocalDeltaLakehouse(warehouse_dir=str(warehouse), spark=spark_resource)
    spark = spark_resource.get_session()
    lakehouse.overwrite(SPEC, rows(spark, 0, INITIAL_ROWS))
    table_dir = warehouse / "main" / "faults" / "big"
    version, id_sum = lakehouse.version(SPEC), INITIAL_ROWS * (INITIAL_ROWS - 1) // 2
    committed = _data_files(table_dir)

    _kill_mid_write(warehouse, mode, table_dir)

    orphans = _data_files(table_dir) - committed
    assert orphans, "the killed write left no file: it was not killed in the middle"
    assert _fresh_process_count(warehouse) == [str(version), str(INITIAL_ROWS), str(id_sum)]
    assert lakehouse.read(SPEC).count() == INITIAL_ROWS

    with pytest.raises(RetentionTooShortError, match="below Delta's default of 168 h"):
        lakehouse.vacuum(SPEC, retention_hours=0)
    kept = lakehouse.vacuum(SPEC, retention_hours=168)  # the orphans are too young
    assert kept.files_deleted == 0 and _data_files(table_dir) - committed == orphans
    orphan_bytes = sum(p.stat().st_size for p in orphans)
    result = lakehouse.vacuum(SPEC, retention_hours=0, allow_short_retention=True)
    assert (result.files_deleted, result.bytes_freed) == (len(orphans), orphan_bytes)
    assert _data_files(table_dir) == committed  # exactly the orphans, nothing referenced
    assert _fresh_process_count(warehouse)[1:] == [str(INITIAL_ROWS), str(id_sum)]
