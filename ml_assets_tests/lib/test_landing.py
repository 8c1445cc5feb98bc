"""The landed-file rule and the decoding of landed bytes (pure Python, no Spark)."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_assets.lib.landing import (
    BOM,
    decoded_lines,
    escape_bytes,
    ingestion_batches,
    is_clean_utf8,
    landed_file_problem,
    landing_day,
    list_landed,
    unescape_bytes,
)


@pytest.mark.parametrize(
    ("name", "landed"),
    [
        ("events.jsonl", True),
        ("part-0001.jsonl", True),
        ("notes.txt", False),
        ("events.jsonl.part", False),
        ("events.part.jsonl", False),
        ("events.jsonl.tmp", False),
        ("events.tmp.jsonl", False),
        (".events.jsonl", False),
        ("_SUCCESS", False),
        ("_events.jsonl", False),
        ("events.json", False),
    ],
)
def test_one_rule_says_what_a_landed_file_is(name, landed):
    assert (landed_file_problem(name) is None) is landed


@pytest.mark.parametrize(
    ("folder", "day"),
    [
        ("date=2026-01-31", dt.date(2026, 1, 31)),
        ("date=not-a-date", None),
        ("date=2026-02-30", None),
        ("date=2026-1-31", None),
        ("date=2026-01-31\n", None),
        ("date=2026-01-31x", None),
        ("2026-01-31", None),
    ],
)
def test_a_landing_day_is_a_folder_named_after_a_real_date(folder, day):
    assert landing_day(folder) == day


def test_listing_keeps_landed_files_and_names_everything_it_ignores(tmp_path):
    day = tmp_path / "date=2026-01-02"
    day.mkdir()
    for name in ("events.jsonl", "notes.txt", "events.jsonl.part", ".hidden.jsonl"):
        (day / name).write_text("{}\n")
    (day / "link.jsonl").symlink_to(day / "events.jsonl")
    (day / "folder.jsonl").mkdir()
    (tmp_path / "date=not-a-date").mkdir()
    (tmp_path / "date=not-a-date" / "events.jsonl").write_text("{}\n")
    (tmp_path / "date=2026-01-01").mkdir()  # nothing landed yet: not a landed day
    (tmp_path / "stray.jsonl").write_text("{}\n")

    listing = list_landed(tmp_path)

    assert listing.dates == [dt.date(2026, 1, 2)]
    assert listing.files[dt.date(2026, 1, 2)] == (day / "events.jsonl",)
    ignored = {i.path: i.why for i in listing.ignored}
    assert set(ignored) == {
        "date=2026-01-02/.hidden.jsonl",
        "date=2026-01-02/events.jsonl.part",
        "date=2026-01-02/folder.jsonl",
        "date=2026-01-02/link.jsonl",
        "date=2026-01-02/notes.txt",
        "date=not-a-date",
        "stray.jsonl",
    }
    assert "date=YYYY-MM-DD" in ignored["date=not-a-date"]
    assert "in progress" in ignored["date=2026-01-02/events.jsonl.part"]
    newest_day, written = listing.newest()
    assert newest_day == dt.date(2026, 1, 2)
    assert written == dt.datetime.fromtimestamp(os.stat(day / "events.jsonl").st_mtime, tz=dt.UTC)


def test_a_missing_folder_lists_nothing(tmp_path):
    listing = list_landed(tmp_path / "absent")
    assert listing.dates == [] and listing.newest() is None


def test_clean_utf8_is_told_from_a_bom_and_from_bytes_that_are_not_utf8(tmp_path):
    cases = {
        "clean": '{"device": "café"}\n'.encode(),
        "bom": BOM + b"{}\n",
        "latin1": b'{"device": "caf\xe9"}\n',
        "truncated": "é".encode()[:1],
        "random": os.urandom(4096) + b"\xff",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert {name: is_clean_utf8(tmp_path / name) for name in cases} == {
        "clean": True,
        "bom": False,
        "latin1": False,
        "truncated": False,
        "random": False,
    }


def test_decoding_strips_the_bom_and_escapes_only_the_lines_that_are_not_utf8(tmp_path):
    path = tmp_path / "events.jsonl"
    bad = b'{"device": "caf\xe9 \\\\ \x00"}'
    path.write_bytes(BOM + b'{"a": "\xc3\xa9"}\r\n' + bad + b"\n\n{}")
    lines = list(decoded_lines(path))
    assert lines == [('{"a": "é"}', False), (escape_bytes(bad), True), ("", False), ("{}", False)]
    assert lines[1][0].isascii() and "\\xe9" in lines[1][0]
    assert unescape_bytes(lines[1][0]) == bad  # the bytes are preserved exactly


def test_escaping_round_trips_every_byte():
    every = bytes(range(256)) + b"\\x41"
    assert unescape_bytes(escape_bytes(every)) == every


DAY = dt.date(2026, 1, 1)


def _days(n: int) -> list[dt.date]:
    return [DAY + dt.timedelta(days=i) for i in range(n)]


def _read(sizes: dict[dt.date, int], first: dt.date, last: dt.date, late: int) -> int:
    return sum(s for d, s in sizes.items() if first <= d <= last + dt.timedelta(days=late))


@given(
    sizes=st.lists(st.integers(0, 1_000), min_size=1, max_size=40),
    late=st.integers(0, 4),
    max_bytes=st.integers(1, 5_000),
    span=st.tuples(st.integers(0, 39), st.integers(0, 39)),
)
def test_batches_cover_the_range_once_in_order_and_stay_under_the_budget(
    sizes, late, max_bytes, span
):
    by_day = dict(zip(_days(len(sizes)), sizes, strict=True))
    start, end = DAY + dt.timedelta(days=min(span)), DAY + dt.timedelta(days=max(span))
    batches = ingestion_batches(by_day, start, end, late_arrival_days=late, max_bytes=max_bytes)
    covered = [d for first, last in batches for d in _days(400) if first <= d <= last]
    assert covered == [d for d in _days(400) if start <= d <= end]  # every day once, in order
    for i, (first, last) in enumerate(batches):
        if last > first:  # a batch of several days reads at most the budget
            assert _read(by_day, first, last, late) <= max_bytes
        if i + 1 < len(batches):  # and stopped only where its next day would have gone over
            assert _read(by_day, first, last + dt.timedelta(days=1), late) > max_bytes


def test_a_day_larger_than_the_budget_is_a_batch_of_its_own_and_late_files_count():
    by_day = dict(zip(_days(6), [10, 10, 500, 10, 10, 10], strict=True))
    # each batch reads its days and the late_arrival_days after them
    assert ingestion_batches(by_day, DAY, _days(6)[-1], late_arrival_days=1, max_bytes=40) == [
        (_days(6)[0], _days(6)[0]),  # 10 + 10 fits; adding day 2 would read day 3's 500
        (_days(6)[1], _days(6)[1]),  # its read already holds the 500
        (_days(6)[2], _days(6)[2]),
        (_days(6)[3], _days(6)[5]),
    ]
    assert ingestion_batches(by_day, DAY, _days(6)[-1], late_arrival_days=1, max_bytes=10**9) == [
        (DAY, _days(6)[-1])
    ]
    assert ingestion_batches({}, DAY, DAY, late_arrival_days=3, max_bytes=1) == [(DAY, DAY)]


@pytest.mark.parametrize(
    ("start", "end", "max_bytes", "message"),
    [
        (DAY + dt.timedelta(days=1), DAY, 100, "is after"),
        (DAY, DAY, 0, "max_bytes must be positive"),
    ],
)
def test_batches_refuse_an_empty_range_and_a_budget_that_is_not_positive(
    start, end, max_bytes, message
):
    with pytest.raises(ValueError, match=message):
        ingestion_batches({DAY: 1}, start, end, late_arrival_days=3, max_bytes=max_bytes)
