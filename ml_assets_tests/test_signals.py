"""A program started with SIGINT ignored (a CI runner's background job) still stops the
processes it starts after a Dagster run with SIGTERM (``ml_assets.programs.signals``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

# Runs a Dagster run on its main thread, then starts `sleep` and sends it SIGTERM: before and
# after keep_sigterm_deliverable, each time after a run.
PROGRAM = """
import json, signal, subprocess, sys
import dagster as dg
from ml_assets.programs.signals import keep_sigterm_deliverable

@dg.asset
def one() -> int:
    return 1

def run_then_stop_a_child(stage):
    assert dg.materialize([one], instance=dg.DagsterInstance.ephemeral()).success
    child = subprocess.Popen(["sleep", "30"])
    child.terminate()
    try:
        code = child.wait(timeout=1)  # a child that stops on SIGTERM takes milliseconds
    except subprocess.TimeoutExpired:
        child.kill()
        code = "still running 1 s after SIGTERM"
    print(json.dumps({
        "stage": stage,
        "sigterm_ignored": signal.getsignal(signal.SIGTERM) is signal.SIG_IGN,
        "child": code,
    }), flush=True)

run_then_stop_a_child("as started")
keep_sigterm_deliverable()
run_then_stop_a_child("kept deliverable")
"""


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_a_child_started_after_a_run_stops_on_sigterm_when_sigint_was_ignored():
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        preexec_fn=_ignore_sigint,  # what a non-interactive shell does to a background job
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = (json.loads(line) for line in done.stdout.splitlines()[-2:])
    # the cause, reproduced: if Dagster stops leaving SIGTERM ignored, the helper can go
    assert before == {
        "stage": "as started",
        "sigterm_ignored": True,
        "child": "still running 1 s after SIGTERM",
    }
    assert after == {"stage": "kept deliverable", "sigterm_ignored": False, "child": -15}


def test_a_command_started_through_it_has_sigint_and_sigterm_at_their_defaults():
    """``make ui`` starts ``dagster dev`` this way: exec keeps an ignored signal ignored."""
    show = (
        "import signal\n"
        "for s in (signal.SIGINT, signal.SIGTERM):\n"
        "    h = signal.getsignal(s)\n"
        "    print({signal.SIG_IGN: 'ignored', signal.SIG_DFL: 'default'}.get(h, 'handled'))"
    )
    direct, wrapped = (
        subprocess.run(
            [*prefix, sys.executable, "-c", show],
            preexec_fn=_ignore_sigint,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for prefix in ([], [sys.executable, "-m", "ml_assets.programs.signals"])
    )
    assert direct == ["ignored", "default"]  # what the command would inherit
    # SIGINT at its default when exec'd, so Python handles it (KeyboardInterrupt)
    assert wrapped == ["handled", "default"]


def test_it_names_its_usage_without_a_command_and_a_command_it_cannot_start():
    wrapper = [sys.executable, "-m", "ml_assets.programs.signals"]
    done = subprocess.run(wrapper, capture_output=True, text=True)
    assert done.returncode == 1 and "usage: python -m ml_assets.programs.signals" in done.stderr
    done = subprocess.run([*wrapper, "no-such-command-here"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "cannot start 'no-such-command-here': No such file or directory "
        "(is it installed and on PATH?)"
    )
