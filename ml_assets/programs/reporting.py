"""Plain-text reports of a run for the terminal (``make run``; later ``make check``)."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg


def run_check_results(result: dg.ExecuteInProcessResult) -> list[dg.AssetCheckEvaluation]:
    return [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]


def materialization_metadata(result: dg.ExecuteInProcessResult, key: str) -> dict | None:
    """Metadata values of the asset's first materialization in the run, or None. (A run over
    a range of days records one materialization per day, each with its own figures:
    ``partition_metadata``.)"""
    for e in result.all_events:
        if e.event_type_value != "ASSET_MATERIALIZATION":
            continue
        materialization = e.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == key:
            return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    return None


def partition_metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, dict]:
    """Metadata values of each partition the run materialized of the asset, by partition key."""
    found = {}
    for e in result.all_events:
        if e.event_type_value != "ASSET_MATERIALIZATION":
            continue
        materialization = e.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == key:
            found[materialization.partition] = {
                k: getattr(v, "value", v) for k, v in materialization.metadata.items()
            }
    return found


def failed_steps(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """Steps that failed, with the user code's error message (a ``dg.Failure``'s description
    as it is). A step stopped by a failed blocking check is left out: the check reports it."""
    failures = {}
    for e in result.all_events:
        if e.event_type_value != "STEP_FAILURE":
            continue
        error = e.event_specific_data.error
        if error is None:
            failures[e.step_key] = e.message or "failed"
            continue
        if error.cls_name == "DagsterAssetCheckFailedError":
            continue
        while error.cls_name == "DagsterExecutionStepExecutionError" and error.cause:
            error = error.cause  # the user code's own exception
        message = error.message.strip()
        if error.cls_name == "Failure":  # a deliberate failure: its description is the message
            message = message.split(": ", 1)[-1]
        failures[e.step_key] = message
    return failures


def step_failure(result: dg.ExecuteInProcessResult, step_key: str) -> str | None:
    """The error message of a failed step of the run, or None."""
    return failed_steps(result).get(step_key)


def _short(metadata: dict, limit: int = 70) -> str:
    shown = ", ".join(
        f"{k}={getattr(v, 'value', v)}" for k, v in metadata.items() if not k.startswith("dagster/")
    )
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def check_rows(checks: Sequence[dg.AssetCheckEvaluation]) -> list[list[object]]:
    return [
        [
            c.asset_key.to_user_string(),
            c.check_name,
            c.severity.value,
            "yes" if c.passed else "NO",
            _short(c.metadata),
        ]
        for c in sorted(checks, key=lambda c: (c.asset_key.to_user_string(), c.check_name))
    ]


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, header))] + [[str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
