"""Pure lakehouse logic: names, declared schemas, write validation, SQL generation."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from pyspark.sql import types as T

from ml_assets.lib.lakehouse import (
    Column,
    InvalidTableNameError,
    InvalidTableSpecError,
    SchemaMismatchError,
    TableCommit,
    TableId,
    TableSpec,
    at_log_file_times,
    merge_sql,
    parse_history,
    plan_conform,
    range_predicate,
    table_schema_problems,
)

SPEC = TableSpec(
    name=TableId.parse("main.raw.things"),
    columns=(
        Column("id", "bigint", nullable=False),
        Column("day", "date", nullable=False),
        Column("amount", "double"),
        Column("note", "string"),
    ),
    partition_by=("day",),
    primary_key=("id",),
)


def test_table_names_map_to_warehouse_locations_and_fold_case():
    name = TableId.parse("Main.Raw.Events")
    assert str(name) == "main.raw.events"
    assert name.location("/w") == Path("/w/main/raw/events")


@pytest.mark.parametrize(
    "bad",
    [
        "events",
        "main.raw",
        "a.b.c.d",
        "main.raw.ev-ents",
        "main.../etc",
        "main.raw.x;drop table y",
        "main.raw.`x`",
        "main. raw.x",
        "main.raw.",
        "main.raw\n.x",  # '$' in a regex accepts a trailing newline; a full match does not
        "main.raw.x\n",
        " main.raw.x",
    ],
)
def test_table_names_with_unsafe_or_missing_parts_are_refused(bad):
    with pytest.raises(InvalidTableNameError):
        TableId.parse(bad)


def test_path_traversal_through_a_constructed_name_is_refused():
    with pytest.raises(InvalidTableNameError, match="schema name '..'"):
        TableId("main", "..", "x")


def test_a_spec_names_its_table_with_a_table_id_checked_at_construction():
    assert TableSpec(name="main.raw.x", columns=(Column("id", "bigint"),)).name == TableId(
        "main", "raw", "x"
    )
    with pytest.raises(InvalidTableNameError, match="three dot-separated parts"):
        TableSpec(name="../../etc", columns=(Column("id", "bigint"),))
    with pytest.raises(InvalidTableSpecError, match="name must be a TableId"):
        TableSpec(name=["main", "raw", "x"], columns=(Column("id", "bigint"),))
    with pytest.raises(InvalidTableSpecError, match=r"column name 'id\\n'"):
        TableSpec(name="main.raw.x", columns=(Column("id\n", "bigint"),))


@pytest.mark.parametrize("column", ["event_date\n", "event_date;", ""])
def test_identifiers_in_sql_must_match_whole(column):
    with pytest.raises(ValueError, match="Invalid column name"):
        range_predicate(column, dt.date(2026, 1, 1), dt.date(2026, 1, 2))
    with pytest.raises(ValueError, match="Invalid identifier"):
        merge_sql("t", "source", [column or "x\n"], [column or "x\n"])


def test_a_spec_with_unknown_dtype_duplicate_column_and_nullable_key_lists_every_problem():
    with pytest.raises(InvalidTableSpecError) as err:
        TableSpec(
            name=TableId.parse("main.raw.bad"),
            columns=(Column("id", "bigint"), Column("id", "long"), Column("x", "varchar")),
            primary_key=("id",),
            partition_by=("nope",),
        )
    msg = str(err.value)
    for fragment in [
        "duplicate column names ['id']",
        "unknown dtype 'long'",
        "unknown dtype 'varchar'",
        "partition column 'nope'",
        "key column 'id' must be declared nullable=False",
    ]:
        assert fragment in msg


def test_a_matching_dataframe_schema_needs_no_casts():
    plan = plan_conform(SPEC, SPEC.spark_schema)
    assert plan.widened == () and plan.filled_with_null == ()


def test_lossless_widening_is_accepted_and_missing_nullable_columns_are_filled():
    found = T.StructType(
        [
            T.StructField("id", T.IntegerType()),
            T.StructField("day", T.DateType()),
            T.StructField("amount", T.FloatType()),
        ]
    )
    plan = plan_conform(SPEC, found)
    assert plan.widened == ("id", "amount")
    assert plan.filled_with_null == ("note",)


def test_a_mismatched_dataframe_is_refused_with_every_problem_named():
    found = T.StructType(
        [
            T.StructField("amount", T.StringType()),  # 'abc' would become NULL on the engine
            T.StructField("id", T.DoubleType()),  # 1.7 would become 1 on the engine
            T.StructField("extra", T.LongType()),  # would be dropped silently
        ]
    )
    with pytest.raises(SchemaMismatchError) as err:
        plan_conform(SPEC, found)
    msg = str(err.value)
    assert "main.raw.things" in msg
    assert "column 'amount': expected double, found string" in msg
    assert "column 'id': expected bigint, found double" in msg
    assert "column 'day': expected date not null, found missing" in msg
    assert "column 'extra': expected no such column, found unexpected bigint" in msg
    assert len(err.value.problems) == 4


def test_timestamp_without_time_zone_is_not_accepted_for_a_utc_timestamp_column():
    spec = TableSpec(TableId.parse("c.s.t"), (Column("ts", "timestamp"),))
    with pytest.raises(SchemaMismatchError, match="expected timestamp, found timestamp_ntz"):
        plan_conform(spec, T.StructType([T.StructField("ts", T.TimestampNTZType())]))


def test_stored_schema_comparison_is_exact_including_nullability():
    stored = T.StructType(
        [
            T.StructField("id", T.LongType(), nullable=True),
            T.StructField("day", T.DateType(), nullable=False),
            T.StructField("amount", T.DoubleType()),
            T.StructField("note", T.StringType()),
        ]
    )
    problems = table_schema_problems(SPEC, stored)
    assert [str(p) for p in problems] == ["column 'id': expected bigint not null, found bigint"]
    assert table_schema_problems(SPEC, SPEC.spark_schema) == []


def test_range_predicate_is_inclusive_and_refuses_bad_input():
    pred = range_predicate("day", dt.date(2026, 1, 1), dt.date(2026, 1, 3))
    assert pred == ("day >= CAST('2026-01-01' AS DATE) AND day <= CAST('2026-01-03' AS DATE)")
    with pytest.raises(ValueError, match="Empty range"):
        range_predicate("day", dt.date(2026, 1, 3), dt.date(2026, 1, 1))
    with pytest.raises(ValueError, match="Invalid column"):
        range_predicate("day; drop", dt.date(2026, 1, 1), dt.date(2026, 1, 1))


def test_merge_sql_updates_only_changed_rows_and_names_every_column():
    sql = merge_sql("delta.`/w/t`", "src", ["id"], ["id", "a", "b"])
    assert sql == (
        "MERGE INTO delta.`/w/t` AS t USING src AS s ON t.id = s.id "
        "WHEN MATCHED AND (NOT (t.a <=> s.a) OR NOT (t.b <=> s.b)) "
        "THEN UPDATE SET t.a = s.a, t.b = s.b "
        "WHEN NOT MATCHED THEN INSERT (id, a, b) VALUES (s.id, s.a, s.b)"
    )
    with pytest.raises(ValueError, match="not among the columns"):
        merge_sql("t", "src", ["k"], ["id"])


def test_history_entries_are_parsed_newest_first_with_row_counts():
    commits = parse_history(
        [
            {"version": 0, "timestamp": 1_700_000_000_000, "operation": "CREATE TABLE"},
            {
                "version": 1,
                "timestamp": 1_700_000_001_000,
                "operation": "WRITE",
                "operationMetrics": {"numOutputRows": 7, "note": "x"},
            },
            {
                "version": 2,
                "timestamp": 1_700_000_002_000,
                "operation": "MERGE",
                "operationMetrics": {"numTargetRowsInserted": 2, "numTargetRowsUpdated": 1},
            },
        ]
    )
    assert [c.version for c in commits] == [2, 1, 0]
    assert [c.rows_written for c in commits] == [3, 7, None]
    assert commits[0].timestamp.tzinfo is dt.UTC


def test_commit_times_are_the_log_files_rounded_up_or_the_writers_where_the_file_is_gone(
    tmp_path: Path,
):
    log = tmp_path / "_delta_log"
    log.mkdir()
    (log / f"{1:020d}.json").write_text("{}")
    mtime_ns = 1_796_584_301_520_095_400  # a time that is not a whole microsecond
    os.utime(log / f"{1:020d}.json", ns=(mtime_ns, mtime_ns))
    writer = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    commits = [TableCommit(v, writer, "WRITE", {}) for v in (1, 0)]  # version 0's log is gone
    timed = at_log_file_times(commits, tmp_path)
    assert [c.version for c in timed] == [1, 0]
    assert timed[0].timestamp == dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        microseconds=1_796_584_301_520_096
    )
    assert timed[1] == commits[1]
