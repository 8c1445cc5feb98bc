"""Peak resident memory of this process and everything it started (``make run`` reports it).

The embedded engine runs inside this process, the gateways and their shadows in children, so
the figure a machine must hold is the sum over the process tree at its worst moment, not any
one process's peak. On Linux a thread samples ``/proc`` every ``interval`` seconds (a peak
shorter than that can be missed); elsewhere, or on a kernel without ``/proc``'s children
lists, only this process's own peak is known (``getrusage``), and the report says so.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


def _rss_bytes(pid: int) -> int:
    """The resident set of one process; 0 when it has gone (it may end between two reads)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in (PROC / str(pid) / "task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return found


def tree_rss(root: int) -> tuple[int, int]:
    """``(sum, largest)`` resident bytes over ``root`` and its descendants, now."""
    total = largest = 0
    pending, seen = [root], set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        rss = _rss_bytes(pid)
        total, largest = total + rss, max(largest, rss)
        pending += _children(pid)
    return total, largest


@dataclass
class Peak:
    tree_bytes: int
    largest_bytes: int
    sampled: bool  # False: only this process's own peak was available

    def describe(self) -> str:
        gib = 2**30
        if not self.sampled:
            return f"peak RSS {self.largest_bytes / gib:.1f} GiB (this process only)"
        return (
            f"peak RSS {self.tree_bytes / gib:.1f} GiB for the process tree "
            f"(largest process {self.largest_bytes / gib:.1f} GiB)"
        )


class PeakMemory:
    """``with PeakMemory() as memory: ...`` then ``memory.result()``: the peak; and, from the
    same samples, ``memory.rises(windows)``: how far each window (a step) raised it."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        pid = str(os.getpid())
        # the children lists need a kernel built with them (CONFIG_PROC_CHILDREN)
        self.sampled = (PROC / pid / "task" / pid / "children").exists()
        self.samples: list[tuple[float, int]] = []  # (wall-clock time, tree bytes)
        self._largest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def _sample(self) -> None:
        total, largest = tree_rss(os.getpid())
        self.samples.append((time.time(), total))
        self._largest = max(self._largest, largest)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakMemory:
        if self.sampled:
            self._sample()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sampled:
            self._stop.set()
            self._thread.join()
            self._sample()

    def result(self) -> Peak:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        own_bytes = own if sys.platform == "darwin" else own * 1024  # bytes on macOS, KiB here
        if not self.sampled:
            return Peak(own_bytes, own_bytes, sampled=False)
        # the kernel's own high-water mark of this process beats a sample that missed it
        largest = max(self._largest, own_bytes)
        tree = max((total for _, total in self.samples), default=0)
        return Peak(max(tree, largest), largest, sampled=True)

    def rises(self, windows: Mapping[str, tuple[float, float]]) -> dict[str, int]:
        """How far each window (``name -> (start, end)``, wall-clock seconds) raised the tree's
        high-water mark, in bytes: its highest sample less the highest before it started. A
        window's plain peak would credit every later step with the memory an earlier one left
        resident. Without samples (``sampled`` False) nothing can be said: an empty dict."""
        raised = {}
        for name, (start, end) in windows.items():
            before = max((rss for t, rss in self.samples if t < start), default=0)
            during = max((rss for t, rss in self.samples if start <= t <= end), default=0)
            raised[name] = max(0, during - before)
        return raised
