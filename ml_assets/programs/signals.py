"""SIGTERM must stay deliverable to the processes a program starts after a Dagster run.

Dagster's in-process execution, on the main thread, installs its own SIGINT handler for the
run and maps SIGTERM to it (``dagster._utils.interrupts``: "Map SIGTERM to SIGINT (for k8s)").
When the run ends it puts SIGINT's handler back and maps SIGTERM to that too. A process started
in the background by a non-interactive shell (``cmd &`` in a script or a CI job) inherits
SIGINT *ignored*, so after its first run the process ignores SIGTERM, and so does every process
it starts from then on (an ignored signal survives ``exec``; a handler does not): a Spark
Connect server stopped with SIGTERM keeps running until it is killed, and a run in another
thread (its step logs captured by ``tail`` processes that Dagster stops with SIGTERM and waits
30 s for, twice, then leaves running) takes a minute longer. Seen in ``.ci/run`` on a clean
clone: one test took 60.4 s instead of 0.5 s, and an external server's fixture waited out its
10 s before killing it.

``keep_sigterm_deliverable`` gives SIGINT Python's default handler (``KeyboardInterrupt``, as
in an interactive shell) when it was ignored, so Dagster maps SIGTERM to a handler, which the
processes started later reset to the default; and it undoes an ignored SIGTERM left by an
earlier run. Call it at the start of a program that runs Dagster in process.

``python -m ml_assets.programs.signals COMMAND [ARGS...]`` does the same for a command it then
becomes (``exec``): ``make ui`` starts ``dagster dev`` through it, which otherwise, started with
SIGINT ignored, maps SIGTERM to that too at start and stops on neither.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

__all__ = ["keep_sigterm_deliverable"]


def keep_sigterm_deliverable() -> None:
    """Un-ignore SIGINT and SIGTERM in this process (module docstring); a no-op off the main
    thread, where Dagster does not touch the handlers either."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python -m ml_assets.programs.signals COMMAND [ARGS...]")
    keep_sigterm_deliverable()  # a handler is reset to the default by exec; SIG_IGN is not
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.exit(f"cannot start {argv[0]!r}: {exc.strerror} (is it installed and on PATH?)")


if __name__ == "__main__":
    main(sys.argv[1:])
