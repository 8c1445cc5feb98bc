"""The process tree's peak memory that ``make run`` reports counts the children's memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ml_assets.programs.memory import PROC, PeakMemory, tree_rss

MIB = 2**20

pytestmark = pytest.mark.skipif(not PROC.is_dir(), reason="the tree is sampled from /proc")


def test_the_peak_is_the_sum_over_the_tree_not_one_process():
    # 256 MiB, every page written so that it is resident; held until told to end
    child = (
        "import sys; block = bytearray(256 * 2**20); block[::4096] = b'x' * (256 * 256); "
        "print('ready', flush=True); sys.stdin.readline()"
    )
    with PeakMemory(interval=0.05) as peak:
        own = tree_rss(os.getpid())[0]
        proc = subprocess.Popen(
            [sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        during = tree_rss(os.getpid())[0]
        time.sleep(0.3)  # six sampling intervals with the child at its peak
        proc.communicate("\n", timeout=30)
    result = peak.result()
    assert result.sampled
    assert during >= own + 250 * MIB  # the child's touched block is resident, and counted
    assert result.tree_bytes >= during - 16 * MIB  # sampled at least as high as seen here
    assert "process tree" in result.describe()


def test_each_window_is_credited_only_with_what_it_raised_the_high_water_mark_by():
    # two children in turn, 192 then 64 MiB: the second window stays under the first's peak
    child = (
        "import sys; mib = int(sys.argv[1]); block = bytearray(mib * 2**20); "
        "block[::4096] = b'x' * (mib * 256); print('ready', flush=True); sys.stdin.readline()"
    )
    windows = {}
    with PeakMemory(interval=0.02) as memory:
        for name, mib in (("big", 192), ("small", 64)):
            start = time.time()
            proc = subprocess.Popen(
                [sys.executable, "-c", child, str(mib)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(0.2)  # ten sampling intervals at the child's peak
            proc.communicate("\n", timeout=30)
            time.sleep(0.1)
            windows[name] = (start, time.time())
    rises = memory.rises(windows)
    assert set(rises) == {"big", "small"}
    assert rises["big"] >= 180 * MIB  # the big child's block, counted where it happened
    assert rises["small"] < 32 * MIB  # below the mark the big one set: it raised nothing
    assert len(memory.samples) >= 20
    assert memory.result().tree_bytes >= max(total for _, total in memory.samples)
