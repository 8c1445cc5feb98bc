"""Importing ml_assets turns transparent huge pages off for the process and its children, so
NumPy's and the allocators' requests for them get ordinary pages (``ml_assets.lib.huge_pages``);
``ML_ASSETS_HUGE_PAGES=on`` allows them again (in a child of a process that had them off),
and a bad value is refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml_assets.lib import huge_pages

pytestmark = pytest.mark.skipif(
    huge_pages.disabled() is None, reason="the kernel has no per-process huge-page setting"
)

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# A child that imports the package, then touches a 64 MiB NumPy array (NumPy asks for huge
# pages on arrays this large) and reports its huge-page state, its anonymous huge pages, and
# the state its own child inherits.
CHILD = """
import json, subprocess, sys
import ml_assets, numpy as np
from ml_assets.lib import huge_pages
def fallbacks():  # huge-page faults the kernel could not serve (no free 2 MiB page)
    stats = dict(line.split() for line in open("/proc/vmstat"))
    return int(stats.get("thp_fault_fallback", 0))
before = fallbacks()
block = np.ones(64 * 2**20, dtype=np.uint8)
rollup = open("/proc/self/smaps_rollup").read()
huge_kib = int(rollup.split("AnonHugePages:")[1].split()[0])
# the grandchild does not import the package: what it reports is what it inherited
grandchild = subprocess.run(
    [sys.executable, "-c", "import ctypes; print(ctypes.CDLL(None).prctl(42, 0, 0, 0, 0))"],
    capture_output=True, text=True, check=True,
).stdout.strip()
print(json.dumps({"disabled": huge_pages.disabled(), "huge_kib": huge_kib,
                  "grandchild_disabled": grandchild == "1", "touched": int(block.sum()),
                  "fallbacks": fallbacks() - before}))
"""


def _child(**env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != huge_pages.SETTING} | env
    return subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, env=environ, timeout=120
    )


def _report(**env: str) -> dict[str, object]:
    done = _child(**env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_package_turns_them_off_for_its_process_and_the_processes_it_starts():
    report = _report()
    assert report == {
        "disabled": True,
        "huge_kib": 0,
        "grandchild_disabled": True,
        "touched": 64 * 2**20,
        "fallbacks": report["fallbacks"],  # a system-wide count: whatever it was
    }


@pytest.mark.skipif(
    not THP_MODE.exists() or "[never]" in THP_MODE.read_text(),
    reason="this kernel gives no transparent huge pages to anyone",
)
def test_on_allows_them_again_and_numpy_gets_them():
    # this test's process has them off (it imported the package): the child turns them on
    report = _report(ML_ASSETS_HUGE_PAGES="on")
    assert report["disabled"] is False and report["grandchild_disabled"] is False
    if report["huge_kib"] == 0 and report["fallbacks"] > 0:
        pytest.skip("the kernel had no free 2 MiB page to give (thp_fault_fallback rose)")
    assert report["huge_kib"] >= 2048  # at least one 2 MiB page backs the array


def test_a_bad_value_is_refused_naming_the_setting_and_the_choices():
    done = _child(ML_ASSETS_HUGE_PAGES="no")
    assert done.returncode != 0
    assert "ML_ASSETS_HUGE_PAGES='no': expected 'off'" in done.stderr
    assert "or 'on'" in done.stderr


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "off"), ("", "off"), ("off", "off"), (" On ", "on")]
)
def test_the_setting_is_read_loosely_as_to_case_and_space(value, expected):
    assert huge_pages.choice(value) == expected


def test_on_a_databricks_cluster_the_process_is_left_as_the_runtime_started_it(monkeypatch):
    calls: list[tuple[int, int]] = []
    record = lambda option, arg=0: calls.append((option, arg)) or 0  # noqa: E731
    monkeypatch.setattr(huge_pages, "_prctl", record)
    assert huge_pages.choice(None, on_databricks=True) == "leave"
    huge_pages.apply(None, on_databricks=True)
    assert calls == [(42, 0)]  # only asked, never set
    calls.clear()
    huge_pages.apply("off", on_databricks=True)  # given: done as asked
    assert calls[0] == (41, 1)
    with pytest.raises(ValueError, match="expected 'off'"):
        huge_pages.choice("leave")  # not a value to set
