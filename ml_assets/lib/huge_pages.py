"""Transparent huge pages off for the project's processes (Linux), unless told otherwise.

NumPy asks the kernel for transparent huge pages on every array of 4 MB or more, and the
mimalloc inside Arrow on its arenas (the embedded engine links a mimalloc of its own). Each
first touch of such a page makes the kernel clear 2 MB at once, and on the virtual machines this
was measured on that clearing cost more than the pages ever saved: landing the demo source took
9.7-16.2 s with them and 5.3-6.0 s without (``benchmarks/huge_pages.py``, alternated, the same
bytes), 53 % of a slow run's samples in the kernel's ``clear_page_erms`` under
``do_huge_pmd_anonymous_page``; the demo job 171.5 and 155.3 s against 115.9 and 122.2 s, in
two pairs. XGBoost's training and the engine's warm joins measured the same either way, within
the sitting's spread.

:func:`apply` sets ``PR_SET_THP_DISABLE`` on this process: the kernel then gives it ordinary
pages whatever the libraries ask, and every process it starts afterwards (the Dagster code
server and run workers, the Pipes training step, the gateways, the test workers) inherits the
setting across ``fork`` and ``exec``. The package root (``ml_assets/__init__.py``) reads the
setting and applies it when the package is first imported, so each entry point (``make run``,
``make test``, ``make ui``, ``make serve``, the benchmarks) runs alike.
``ML_ASSETS_HUGE_PAGES=on`` allows them again (for a process started by one that had them off):
the libraries then get them where the kernel's mode allows (a machine where clearing a huge page
is cheap may prefer it). On a Databricks cluster (``DATABRICKS_RUNTIME_VERSION`` set: the Pipes
training script imports the package there), the process is left as the runtime started it unless
the setting is given: nothing was measured there.
"""

from __future__ import annotations

import ctypes
import sys

SETTING = "ML_ASSETS_HUGE_PAGES"
CHOICES = ("off", "on")
LEAVE = "leave"  # the default on a Databricks cluster: no call at all
_PR_SET_THP_DISABLE = 41
_PR_GET_THP_DISABLE = 42


def choice(setting: str | None, on_databricks: bool = False) -> str:
    """``off`` or ``on`` as set (``off`` unset, locally), ``leave`` unset on Databricks.
    ``setting`` is ``ML_ASSETS_HUGE_PAGES``'s value; the package root reads it."""
    default = LEAVE if on_databricks else "off"
    value = (setting or "").strip().lower() or default
    if value == LEAVE and default == LEAVE:
        return value
    if value not in CHOICES:
        raise ValueError(
            f"{SETTING}={setting!r}: expected 'off' (the default: no transparent huge "
            "pages for the project's processes) or 'on' (allowed where the kernel's mode allows "
            "them). Unset it or set one of those."
        )
    return value


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, arg, 0, 0, 0)


def disabled() -> bool | None:
    """Whether transparent huge pages are off for this process; None where the kernel has no
    such setting (not Linux, or older than 3.15)."""
    if not sys.platform.startswith("linux"):
        return None
    state = _prctl(_PR_GET_THP_DISABLE)
    return None if state < 0 else bool(state)


def apply(setting: str | None, on_databricks: bool = False) -> bool | None:
    """Turn transparent huge pages off for this process and its future children, or on again
    with ``ML_ASSETS_HUGE_PAGES=on``; returns :func:`disabled` afterwards. A kernel that refuses
    the call (a sandbox filtering ``prctl``) leaves the process as it was, which the return
    value shows: pages are a matter of speed, never of results."""
    wanted = choice(setting, on_databricks)
    if wanted != LEAVE and sys.platform.startswith("linux"):
        _prctl(_PR_SET_THP_DISABLE, 1 if wanted == "off" else 0)
    return disabled()
