"""The lakehouse contract on real Delta tables, on every engine lane and both table flavours
(by path, and catalog tables on the spark lane): schema enforcement, refused writes, time
travel, history and properties behave the same everywhere."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from ml_assets.lib.lakehouse import Column, SchemaMismatchError, TableId, TableSpec
from ml_assets.resources.lakehouse import (
    SCRATCH_SCHEMA,
    CatalogDeltaLakehouse,
    RetentionTooShortError,
    TableNotFoundError,
    WriteRefusedError,
)
from ml_assets.resources.spark import SparkConnectRemote
from ml_assets_tests.lanes import LAKEHOUSE_LANES, TEST_CATALOG, drop_schema, lakehouse_on

SPEC = TableSpec(
    name=TableId.parse("main.test.orders"),
    columns=(
        Column("order_id", "bigint", nullable=False),
        Column("day", "date", nullable=False),
        Column("amount", "double"),
        Column("status", "string"),
    ),
    partition_by=("day",),
    primary_key=("order_id",),
    description="Orders for lakehouse tests.",
    owner="ml-platform",
)
SCHEMA = "order_id bigint, day date, amount double, status string"
D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)


def rows(lakehouse, **kw):
    return sorted(tuple(r) for r in lakehouse.read(SPEC, **kw).collect())


@pytest.fixture(params=LAKEHOUSE_LANES)
def lakehouse(request, tmp_path):
    lane, flavour = request.param
    lakehouse = lakehouse_on(request, lane, flavour, str(tmp_path / "warehouse"))
    drop_schema(lakehouse, "test")
    yield lakehouse
    drop_schema(lakehouse, "test")


@pytest.fixture
def spark(lakehouse):
    """The lane's session: the DataFrames a test writes come from the engine that writes them."""
    return lakehouse.spark.get_session()


@pytest.fixture
def orders(lakehouse, spark):
    lakehouse.overwrite(
        SPEC,
        spark.createDataFrame(
            [(1, D1, 10.0, "new"), (2, D2, 20.0, "new"), (3, D3, 30.0, "new")], SCHEMA
        ),
    )
    return lakehouse


def test_overwrite_creates_the_table_with_declared_schema_owner_and_description(orders, tmp_path):
    if isinstance(orders, CatalogDeltaLakehouse):
        assert orders.uri(SPEC).endswith("/test.db/orders")  # a managed table of the catalog
    else:
        assert (tmp_path / "warehouse/main/test/orders/_delta_log").is_dir()
    assert orders.version(SPEC) == 1  # version 0 is the CREATE TABLE from the declared schema
    assert orders.schema(SPEC) == SPEC.spark_schema
    props = orders.properties(SPEC)
    assert props["ml_assets.owner"] == "ml-platform"
    assert props["comment"] == "Orders for lakehouse tests."
    assert [c.operation for c in orders.history(SPEC)] == ["WRITE", "CREATE TABLE"]
    assert orders.history(SPEC)[0].rows_written == 3


def test_append_adds_rows_and_widens_int_losslessly(orders, spark):
    orders.append(
        SPEC,
        spark.createDataFrame(
            [(4, D1, 1.0, None)], "order_id int, day date, amount double, status string"
        ),
    )
    assert (4, D1, 1.0, None) in rows(orders)
    assert orders.version(SPEC) == 2


def test_a_mistyped_append_is_refused_and_leaves_table_unchanged(orders, spark):
    before_rows, before_version = rows(orders), orders.version(SPEC)
    bad = spark.createDataFrame(
        [(5, D1, "abc", "x")], "order_id bigint, day date, amount string, status string"
    )
    with pytest.raises(SchemaMismatchError, match="column 'amount': expected double, found string"):
        orders.append(SPEC, bad)
    truncating = spark.createDataFrame(
        [(1.7, D1, 1.0, "x")], "order_id double, day date, amount double, status string"
    )
    with pytest.raises(
        SchemaMismatchError, match="column 'order_id': expected bigint, found double"
    ):
        orders.append(SPEC, truncating)
    extra = spark.createDataFrame([(6, D1, 1.0, "x", 1)], SCHEMA + ", surprise int")
    with pytest.raises(SchemaMismatchError, match="column 'surprise'"):
        orders.overwrite(SPEC, extra)
    assert orders.version(SPEC) == before_version
    assert rows(orders) == before_rows


def test_a_null_in_a_non_nullable_column_is_refused_and_leaves_table_unchanged(orders, spark):
    before_rows, before_version = rows(orders), orders.version(SPEC)
    with pytest.raises(WriteRefusedError, match="main.test.orders"):
        orders.append(SPEC, spark.createDataFrame([(None, D1, 1.0, "x")], SCHEMA))
    assert orders.version(SPEC) == before_version and rows(orders) == before_rows


def test_replace_range_replaces_only_that_range_and_is_idempotent(orders, spark):
    new = spark.createDataFrame([(7, D2, 70.0, "re"), (8, D3, 80.0, "re")], SCHEMA)
    orders.replace_range(SPEC, new, column="day", start=D2, end=D3)
    once = rows(orders)
    assert once == [(1, D1, 10.0, "new"), (7, D2, 70.0, "re"), (8, D3, 80.0, "re")]
    orders.replace_range(SPEC, new, column="day", start=D2, end=D3)
    assert rows(orders) == once


def test_replace_range_refuses_rows_outside_the_range(orders, spark):
    before_rows, before_version = rows(orders), orders.version(SPEC)
    stray = spark.createDataFrame([(7, D2, 1.0, "x"), (9, D1, 1.0, "x")], SCHEMA)
    with pytest.raises(
        WriteRefusedError, match=r"rows outside that range \(for example day=\[2026-01-01\]\)"
    ):
        orders.replace_range(SPEC, stray, column="day", start=D2, end=D3)
    assert orders.version(SPEC) == before_version and rows(orders) == before_rows


def test_replace_range_writes_a_dataframe_filtered_to_the_range(orders, spark):
    """The range is checked on the rows written: rows a filter removed, outside the range,
    are not refused (an engine that checked below the filter would refuse them)."""
    days = spark.createDataFrame(
        [(7, D1, 70.0, "x"), (8, D2, 80.0, "re"), (9, D3, 90.0, "y")], SCHEMA
    )
    orders.replace_range(SPEC, days.where("day = DATE'2026-01-02'"), column="day", start=D2, end=D2)
    assert rows(orders) == [(1, D1, 10.0, "new"), (3, D3, 30.0, "new"), (8, D2, 80.0, "re")]


def test_merge_upserts_on_the_primary_key_and_running_it_twice_yields_the_same_table(orders, spark):
    src = spark.createDataFrame([(2, D2, 25.0, "paid"), (4, D1, 40.0, "new")], SCHEMA)
    orders.merge(SPEC, src)
    once = rows(orders)
    assert once == [
        (1, D1, 10.0, "new"),
        (2, D2, 25.0, "paid"),
        (3, D3, 30.0, "new"),
        (4, D1, 40.0, "new"),
    ]
    orders.merge(SPEC, src)
    assert rows(orders) == once


def test_merge_refuses_a_source_with_duplicate_keys(orders, spark):
    before_version = orders.version(SPEC)
    src = spark.createDataFrame([(2, D2, 25.0, "a"), (2, D2, 26.0, "b")], SCHEMA)
    with pytest.raises(WriteRefusedError, match=r"several rows for the same key.*\(2,\)"):
        orders.merge(SPEC, src)
    assert orders.version(SPEC) == before_version


def test_merging_an_empty_source_changes_nothing(orders, spark):
    # The source is checkpointed before the key check and the merge: an empty one writes no
    # file and must still read back as empty rows of its schema.
    before_version, before = orders.version(SPEC), rows(orders)
    commit = orders.merge(SPEC, spark.createDataFrame([], SCHEMA))
    assert (commit.version, commit.rows_written) == (before_version, 0)
    assert rows(orders) == before


def test_time_travel_by_version_and_by_timestamp(orders, spark):
    v1_rows = rows(orders)
    v1_time = orders.history(SPEC, limit=1)[0].timestamp
    orders.overwrite(SPEC, spark.createDataFrame([(100, D1, 1.0, "only")], SCHEMA))
    assert rows(orders) == [(100, D1, 1.0, "only")]
    assert rows(orders, version=1) == v1_rows
    assert rows(orders, timestamp=v1_time) == v1_rows
    with pytest.raises(ValueError, match="timezone-aware"):
        orders.read(SPEC, timestamp=v1_time.replace(tzinfo=None))


def test_a_history_timestamp_reads_its_version_when_the_log_file_landed_late(
    orders, spark, tmp_path
):
    """Time travel by timestamp resolves against the log files' modification times (the Delta
    protocol's commit time). The writer's commitInfo time can be earlier under load (the test
    above failed once in the suite: reading as of it gave the empty version 0); history reports
    the file's time, so a timestamp it gives reads its own version."""
    if orders.spark.traits.delta_sql:
        pytest.skip("history is the engine's DESCRIBE HISTORY on this lane, not delta-rs")
    v1_rows = rows(orders)
    orders.overwrite(SPEC, spark.createDataFrame([(100, D1, 1.0, "only")], SCHEMA))
    log = tmp_path / "warehouse/main/test/orders/_delta_log"
    v1_file, v2_file = log / f"{1:020d}.json", log / f"{2:020d}.json"
    # v1's file lands well after its writer read the clock, still before v2's
    landed = (orders.history(SPEC)[1].timestamp.timestamp() + v2_file.stat().st_mtime) / 2
    os.utime(v1_file, (landed, landed))
    v1_time = orders.history(SPEC)[1].timestamp
    assert v1_time.timestamp() == pytest.approx(landed, abs=1e-5)
    assert rows(orders, timestamp=v1_time) == v1_rows


def test_a_table_whose_stored_schema_drifted_from_the_declaration_is_refused(orders, spark):
    drifted = TableSpec(
        SPEC.name, SPEC.columns[:3] + (Column("status", "bigint"),), primary_key=("order_id",)
    )
    with pytest.raises(SchemaMismatchError, match="stored schema differs"):
        orders.append(
            drifted,
            spark.createDataFrame(
                [(5, D1, 1.0, 3)], "order_id bigint, day date, amount double, status bigint"
            ),
        )


def test_changed_owner_is_written_to_the_table_properties(orders, spark):
    moved = TableSpec(
        SPEC.name,
        SPEC.columns,
        SPEC.partition_by,
        SPEC.primary_key,
        SPEC.description,
        owner="data-science",
    )
    orders.append(moved, spark.createDataFrame([(5, D1, 1.0, "x")], SCHEMA))
    assert orders.properties(SPEC)["ml_assets.owner"] == "data-science"


def test_reading_a_missing_table_names_it(lakehouse):
    assert lakehouse.version("main.test.nothing") is None
    with pytest.raises(TableNotFoundError, match="main.test.nothing does not exist"):
        lakehouse.read("main.test.nothing")


def test_rows_removed_by_a_filter_do_not_trip_the_not_null_constraint(orders, spark):
    # Sail 0.7 evaluates NOT NULL below an upstream filter; the adapter must not refuse this.
    src = spark.createDataFrame([(None, D1, 1.0, "x"), (11, D1, 1.0, "y")], SCHEMA)
    orders.append(SPEC, src.where("order_id IS NOT NULL"))
    assert (11, D1, 1.0, "y") in rows(orders)


def test_checkpoint_computes_once_and_cleans_up(lakehouse, spark, tmp_path):
    df = spark.range(5).selectExpr("id", "id * 2 AS twice")
    folder = tmp_path / "warehouse/_checkpoints"
    with lakehouse.checkpoint(df) as stored:
        assert sorted(tuple(r) for r in stored.collect()) == [(i, 2 * i) for i in range(5)]
        if lakehouse.spark.traits.cache:  # persisted by the engine, nothing on disk
            assert stored.storageLevel.useMemory or stored.storageLevel.useDisk
        else:  # written once to Parquet
            assert any(folder.iterdir())
    assert not folder.exists() or not any(folder.iterdir())


def test_an_empty_checkpoint_is_empty_rows_of_its_schema(lakehouse, spark):
    df = spark.range(5).selectExpr("id", "CAST(id AS STRING) AS name").where("id < 0")
    with lakehouse.checkpoint(df) as stored:
        assert stored.schema.names == ["id", "name"]
        assert stored.groupBy("name").count().collect() == []


def test_vacuum_deletes_the_files_of_replaced_versions_and_keeps_the_current_rows(orders, spark):
    orders.overwrite(SPEC, spark.createDataFrame([(100, D1, 1.0, "only")], SCHEMA))
    with pytest.raises(RetentionTooShortError, match="below Delta's default"):
        orders.vacuum(SPEC, retention_hours=0)
    result = orders.vacuum(SPEC, retention_hours=0, allow_short_retention=True)
    assert result.files_deleted >= 3  # the three day partitions' files of version 1
    assert rows(orders) == [(100, D1, 1.0, "only")]
    assert result.version == orders.version(SPEC)


@pytest.mark.lanes
def test_a_catalog_checkpoint_without_persist_is_a_scratch_table_dropped_after(spark_lane):
    """Databricks serverless compute cannot persist: the catalog lakehouse checkpoints to a
    scratch Delta table instead (shown on the spark lane with serverless traits)."""
    serverless = SparkConnectRemote(remote=spark_lane.remote, engine="databricks-serverless")
    assert not serverless.traits.cache
    lakehouse = CatalogDeltaLakehouse(spark=serverless, catalog=TEST_CATALOG)
    session = serverless.get_session()

    def scratch_tables() -> list[str]:
        session.sql(f"CREATE SCHEMA IF NOT EXISTS `{TEST_CATALOG}`.`{SCRATCH_SCHEMA}`").collect()
        shown = session.sql(f"SHOW TABLES IN `{TEST_CATALOG}`.`{SCRATCH_SCHEMA}`").collect()
        return [r["tableName"] for r in shown]

    before = scratch_tables()
    df = session.range(5).selectExpr("id", "id * 2 AS twice")
    with lakehouse.checkpoint(df) as stored:
        assert sorted(tuple(r) for r in stored.collect()) == [(i, 2 * i) for i in range(5)]
        (made,) = set(scratch_tables()) - set(before)
        assert made.startswith("checkpoint_")
    assert scratch_tables() == before
