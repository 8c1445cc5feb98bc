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
