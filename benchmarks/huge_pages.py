"""Transparent huge pages on and off, side by side: is ``ML_ASSETS_HUGE_PAGES=off`` right here?

    .venv/bin/python benchmarks/huge_pages.py [--scale demo|tiny] [--repeats 3]

Lands the demo source (simulate the business, make its dirty lines, write every day's file:
NumPy and Arrow allocate and fill fresh memory, about 1.6 GiB at the peak) in a new process per
run, into a new temporary directory, alternating the two settings:

  off -- ``ML_ASSETS_HUGE_PAGES=off``: the project's default (``ml_assets/lib/huge_pages.py``);
  on  -- ``ML_ASSETS_HUGE_PAGES=on``: NumPy and the allocators get the huge pages they ask
         for, where the kernel's mode (``/sys/kernel/mm/transparent_hugepage/enabled``) allows.

Reports each run's wall, user and system seconds and peak RSS, the medians, and the ratio of
the medians off / on (below 1: off is faster on this machine). The same bytes are landed each
time (the source is seeded). ``make run`` prints the whole job's figure for the setting it ran
with; run it with ``ML_ASSETS_HUGE_PAGES=on`` to compare the job itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ml_assets.lib import huge_pages
from ml_assets.lib.source import SCALES

# One run: land the source in this (new) process, then report what it cost.
RUN = """
import json, resource, sys, time
from ml_assets.lib import huge_pages
from ml_assets.lib.source import SCALES, land
started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
summary = land(SCALES[sys.argv[1]], sys.argv[2])
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "wall": time.perf_counter() - started,
    "user": after.ru_utime - before.ru_utime,
    "sys": after.ru_stime - before.ru_stime,
    "peak_mib": after.ru_maxrss / 1024,
    "lines": summary.event_lines + summary.change_lines,
    "disabled": huge_pages.disabled(),
}))
"""


def one_run(setting: str, scale: str) -> dict[str, float]:
    environ = {**os.environ, huge_pages.SETTING: setting}
    with tempfile.TemporaryDirectory(prefix="huge-pages-") as root:
        done = subprocess.run(
            [sys.executable, "-c", RUN, scale, str(Path(root) / "landing")],
            env=environ,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"the {setting} run failed:\n{done.stderr}")
    report = json.loads(done.stdout.splitlines()[-1])
    if report["disabled"] is not (setting == "off"):
        state = report["disabled"]
        raise SystemExit(f"the {setting} run's process had huge pages disabled={state}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="demo")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if huge_pages.disabled() is None:
        raise SystemExit("this kernel has no per-process huge-page setting: nothing to compare")
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    print(f"kernel mode: {mode.read_text().strip() if mode.exists() else 'unknown'}")
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for n in range(args.repeats):
        for setting in ("off", "on") if n % 2 == 0 else ("on", "off"):
            report = one_run(setting, args.scale)
            runs[setting].append(report)
            print(
                f"  {setting:>3}  wall {report['wall']:6.2f} s  user {report['user']:6.2f} s  "
                f"sys {report['sys']:6.2f} s  peak {report['peak_mib']:7.0f} MiB  "
                f"({report['lines']:,} lines)",
                flush=True,
            )
    median = {
        setting: {k: statistics.median(r[k] for r in reports) for k in ("wall", "sys", "peak_mib")}
        for setting, reports in runs.items()
    }
    for setting, m in median.items():
        print(
            f"{setting:>3}  median of {args.repeats}: wall {m['wall']:.2f} s, "
            f"sys {m['sys']:.2f} s, peak {m['peak_mib']:.0f} MiB"
        )
    print(
        f"off / on: wall {median['off']['wall'] / median['on']['wall']:.2f}x, "
        f"peak {median['off']['peak_mib'] / median['on']['peak_mib']:.2f}x"
    )


if __name__ == "__main__":
    main()
