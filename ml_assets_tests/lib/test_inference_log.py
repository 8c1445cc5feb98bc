"""The gateway's inference log: a bounded buffer that never blocks, batches written whole,
nothing lost on close, unreadable lines quarantined and counted."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time

import numpy as np

from ml_assets.lib.serving.inference_log import (
    Answer,
    InferenceLogger,
    done_with,
    pending_files,
    read_files,
)

T = dt.datetime(2026, 4, 30, 23, 59, 59, tzinfo=dt.UTC)


def scored(i: int, when: dt.datetime = T) -> Answer:
    return Answer(
        request_id=f"r{i}",
        client_request_id=f"client-{i}" if i % 2 else None,
        request_time=when,
        endpoint_name="churn_classifier",
        status_code=200,
        execution_time_ms=1.5,
        feature_time=dt.datetime(2026, 5, 1, tzinfo=dt.UTC),
        served_entity_name="champion",
        model_name="main.models.churn_classifier",
        model_version="3",
        user_ids=[i, i + 1],
        features=[
            {"events_7d": np.int64(4), "revenue_7d": float("nan"), "plan_tier": "free"},
            {"events_7d": 0, "revenue_7d": 2.5, "plan_tier": None},
        ],
        predictions=[0.25, 0.75],
        lookup_missed=[False, True],
    )


def test_every_answer_is_written_in_batches_and_close_loses_nothing(tmp_path):
    logger = InferenceLogger(tmp_path / "log", batch_records=7, flush_seconds=0.05).start()
    midnight = T + dt.timedelta(seconds=1)  # the next day: its own partition folder
    for i in range(40):
        assert logger.log(scored(i, T if i < 30 else midnight))
    logger.log(Answer("bad", T, "churn_classifier", 400, 0.2, error="user_id must be an integer"))
    logger.close()
    stats = logger.stats()
    assert stats["answers_written"] == 41 and stats["rows_written"] == 81
    assert stats["dropped"] == 0 and stats["queued"] == 0 and stats["files_written"] >= 6
    files = pending_files(tmp_path / "log")
    assert {f.parent.name for f in files} == {"date=2026-04-30", "date=2026-05-01"}
    logged = read_files(files)
    assert logged.unreadable == {} and len(logged.rows) == 81
    rows = {(r["request_id"], r["row_index"]): r for r in logged.rows}
    first = rows[("r1", 0)]
    assert first["client_request_id"] == "client-1" and first["user_id"] == 1
    assert json.loads(first["features"]) == {
        "events_7d": 4,
        "revenue_7d": None,
        "plan_tier": "free",
    }
    assert first["prediction"] == 0.25 and first["lookup_missed"] is False
    assert first["date"] == dt.date(2026, 4, 30) and first["request_time"] == T
    assert rows[("r1", 1)]["lookup_missed"] is True
    refused = rows[("bad", 0)]
    assert refused["status_code"] == 400 and refused["user_id"] is None
    assert refused["error"] == "user_id must be an integer" and refused["prediction"] is None


def test_a_full_queue_drops_and_counts_and_never_blocks(tmp_path):
    logger = InferenceLogger(tmp_path / "log", capacity=3)  # no writer running: it fills
    started = time.perf_counter()
    accepted = [logger.log(scored(i)) for i in range(10)]
    assert time.perf_counter() - started < 0.5  # ten put_nowait calls, no waiting
    assert accepted == [True] * 3 + [False] * 7 and logger.stats()["dropped"] == 7
    logger.close()  # the queued three are still written
    assert len(read_files(pending_files(tmp_path / "log")).rows) == 6


def test_a_batch_that_cannot_be_written_is_counted_and_the_writer_goes_on(tmp_path):
    blocked = tmp_path / "log"
    blocked.write_text("a file where the log folder should be")
    logger = InferenceLogger(blocked, flush_seconds=0.05)
    logger.log(scored(1))
    logger.close()
    assert logger.stats()["write_errors"] == 1 and logger.stats()["answers_lost"] == 1


def test_a_day_that_cannot_be_written_loses_only_its_own_answers(tmp_path):
    root = tmp_path / "log"
    root.mkdir()
    (root / "date=2026-05-01").write_text("a file where the day's folder should be")
    logger = InferenceLogger(root)  # never started: close() writes the three as one batch
    next_day = T + dt.timedelta(seconds=1)
    for answer in (scored(1), scored(2, next_day), scored(3)):
        logger.log(answer)
    logger.close()
    stats = logger.stats()
    assert (stats["write_errors"], stats["answers_lost"]) == (1, 1)
    assert (stats["answers_written"], stats["rows_written"], stats["files_written"]) == (2, 4, 1)
    written = read_files(pending_files(root)).rows
    assert {r["request_id"] for r in written} == {"r1", "r3"}


def test_an_answer_json_cannot_hold_is_counted_and_the_others_are_written(tmp_path):
    logger = InferenceLogger(tmp_path / "log")
    odd = dataclasses.replace(scored(2), features=[{"tags": {"a"}}, {"tags": {"b"}}])
    for answer in (scored(1), odd, scored(3)):
        logger.log(answer)
    logger.close()
    assert logger.stats()["answers_lost"] == 1 and logger.stats()["answers_written"] == 2
    written = read_files(pending_files(tmp_path / "log")).rows
    assert {r["request_id"] for r in written} == {"r1", "r3"}


def test_unreadable_lines_are_quarantined_and_counted_and_partial_files_wait(tmp_path):
    root = tmp_path / "log"
    logger = InferenceLogger(root)
    logger.log(scored(1))
    logger.close()
    (good,) = pending_files(root)
    bad = good.parent / "0-bad.jsonl"
    line = json.loads(good.read_text().splitlines()[0])
    bad.write_text(
        "\n".join(
            [
                json.dumps(line | {"request_id": "kept"}),
                "{not json",
                json.dumps(line | {"request_time": "yesterday"}),  # the wrong type
                json.dumps({k: v for k, v in line.items() if k != "prediction"}),  # a field gone
                "[" * 100_000,  # nested past the parser's recursion limit
                '{"row_index": ' + "1" * 5_000 + "}",  # a number past int's digit limit
            ]
        )
        + "\n"
    )
    with bad.open("ab") as handle:  # a whole line, its id's bytes not UTF-8: not replaced
        handle.write(json.dumps(line | {"request_id": "X"}).encode().replace(b'"X"', b'"\xff"'))
    (good.parent / "9-half.jsonl.tmp").write_text("{")  # being written: not read
    files = pending_files(root)
    assert [f.name for f in files] == ["0-bad.jsonl", good.name]
    logged = read_files(files)
    assert logged.unreadable == {"0-bad.jsonl": 6}
    assert sorted({r["request_id"] for r in logged.rows}) == ["kept", "r1"]
    done_with(logged, root)
    assert pending_files(root) == []
    assert (root / "_quarantine" / good.parent.name / "0-bad.jsonl").exists()
    assert (root / "_ingested" / good.parent.name / good.name).exists()
