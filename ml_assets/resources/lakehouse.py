"""The lakehouse adapter: Delta tables addressed by ``catalog.schema.table``.

Every write is validated against the table's declared ``TableSpec`` before anything is
written (``ml_assets.lib.lakehouse.plan_conform``); a refused write leaves the table exactly
as it was. Two implementations share the write path:

- ``LocalDeltaLakehouse``: tables by path under ``<warehouse>/<catalog>/<schema>/<table>``, the
  local default. Reads and writes go through Spark; table creation, history, properties and
  vacuum go through SQL on engines that have it (Apache Spark, Databricks) and through delta-rs
  on the same files on those that do not (Sail: no ``DESCRIBE HISTORY``, ``SHOW TBLPROPERTIES``,
  ``VACUUM``), chosen by the engine's traits (``ml_assets.lib.engines``).
- ``CatalogDeltaLakehouse``: tables in the session's catalog, as Unity Catalog addresses them
  (``CREATE TABLE``, ``saveAsTable``, ``INSERT OVERWRITE``, ``MERGE INTO``, ``replaceWhere``,
  ``VERSION AS OF``, ``DESCRIBE HISTORY``, ``ALTER TABLE ... SET TBLPROPERTIES``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import dagster as dg
from deltalake import DeltaTable
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_assets.lib.lakehouse import (
    SchemaMismatchError,
    TableCommit,
    TableId,
    TableSpec,
    at_log_file_times,
    create_table_sql,
    merge_sql,
    parse_history,
    parse_sql_history,
    plan_conform,
    range_predicate,
    sql_quote_path,
    sql_string,
    sql_table_name,
    table_schema_problems,
)
from ml_assets.resources.spark import SparkResource

TableRef = TableSpec | TableId | str
DEFAULT_RETENTION_HOURS = 168  # Delta's default deleted-file retention: 7 days
# a file the local object store writes before renaming it into place: ``part-....parquet#1``
_HALF_WRITTEN = re.compile(r"#\d+$")


@dataclasses.dataclass(frozen=True)
class VacuumResult:
    table: str
    files_deleted: int
    bytes_freed: int
    version: int  # the table's version after the vacuum


class RetentionTooShortError(ValueError):
    """A vacuum retention below the default, not explicitly allowed."""


class TableNotFoundError(LookupError):
    """A read of a table that has never been written."""


class WriteRefusedError(ValueError):
    """A write the table's contract does not allow (null in a key, duplicate merge keys...)."""


# The error a written row outside a replace_range's range raises: "<mark> <column>=[<value>]".
_OUTSIDE_RANGE = "ML_ASSETS_ROW_OUTSIDE_REPLACED_RANGE"
_OUTSIDE_RANGE_FOUND = re.compile(rf"{_OUTSIDE_RANGE} (\S+=\[.*?\])")


def _refused_outside_range(df: DataFrame, column: str, predicate: str) -> DataFrame:
    """``df`` whose ``column`` raises, as each row is written, for a row outside ``predicate``
    (or null in it): the check Delta's ``replaceWhere`` makes on Spark and Sail does not.
    Made while writing, it costs no second computation of ``df`` (a query for such rows
    before the write computed it twice). It sits on the rows being written, above
    ``_conform``'s shuffle on Sail, so a row that a filter of ``df`` removed never reaches it
    (tested on every lane)."""
    outside = ~F.expr(predicate) | F.col(column).isNull()
    shown = F.coalesce(F.col(column).cast("string"), F.lit("null"))
    message = F.concat(F.lit(f"{_OUTSIDE_RANGE} {column}=["), shown, F.lit("]"))
    return df.withColumn(column, F.when(outside, F.raise_error(message)).otherwise(F.col(column)))


def _table_id(table: TableRef) -> TableId:
    if isinstance(table, TableSpec):
        return table.name
    if isinstance(table, TableId):
        return table
    return TableId.parse(table)


class Lakehouse(dg.ConfigurableResource, ABC):
    """Tables with declared schemas, time travel and history. Assets are typed against this."""

    @abstractmethod
    def read(
        self, table: TableRef, *, version: int | None = None, timestamp: dt.datetime | None = None
    ) -> DataFrame:
        """The table now, or as of a version or a timestamp (time travel)."""

    @abstractmethod
    def overwrite(self, spec: TableSpec, df: DataFrame) -> TableCommit:
        """Create the table or replace all of its rows."""

    @abstractmethod
    def append(self, spec: TableSpec, df: DataFrame) -> TableCommit: ...

    @abstractmethod
    def replace_range(
        self, spec: TableSpec, df: DataFrame, *, column: str, start: dt.date, end: dt.date
    ) -> TableCommit:
        """Replace exactly the rows with ``start <= column <= end`` by ``df`` (``replaceWhere``).

        Idempotent: running it twice with the same ``df`` leaves the same rows. A row of
        ``df`` outside the range (or with a null ``column``) is a ``WriteRefusedError``, and
        nothing is committed.
        """

    @abstractmethod
    def merge(self, spec: TableSpec, df: DataFrame) -> TableCommit:
        """Upsert ``df`` on the spec's primary key; unchanged rows are not rewritten."""

    @abstractmethod
    def version(self, table: TableRef) -> int | None:
        """Current Delta version, or None when the table does not exist."""

    @abstractmethod
    def history(self, table: TableRef, limit: int | None = None) -> list[TableCommit]: ...

    @abstractmethod
    def properties(self, table: TableRef) -> dict[str, str]:
        """The table's user properties (``delta.*`` protocol settings left out), and its
        description under ``comment``."""

    @abstractmethod
    def schema(self, table: TableRef) -> T.StructType:
        """The table's actual schema as stored."""

    @abstractmethod
    def uri(self, table: TableRef) -> str: ...

    @abstractmethod
    def checkpoint(self, df: DataFrame) -> AbstractContextManager[DataFrame]:
        """``df`` computed once, for as long as the block runs: persisted on engines whose
        cache works, written to Parquet and read back on the others (Sail's ``cache()`` is a
        no-op, so a DataFrame used by several actions would be recomputed by each).
        """

    def exists(self, table: TableRef) -> bool:
        return self.version(table) is not None

    def current_version(self, table: TableRef) -> int:
        """The current version; a table never written is a ``TableNotFoundError``."""
        version = self.version(table)
        if version is None:
            raise TableNotFoundError(
                f"Table {_table_id(table)} does not exist. Materialize the asset that writes "
                "it first."
            )
        return version

    def table_reference(self, table: TableRef) -> str:
        """How a job running elsewhere (a Pipes subprocess, a Databricks job) reads the table:
        its path (``file://...``), or its catalog name where the catalog governs access."""
        return self.uri(table)

    @abstractmethod
    def vacuum(
        self, table: TableRef, retention_hours: int, *, allow_short_retention: bool = False
    ) -> VacuumResult:
        """Delete the table's files that no version within ``retention_hours`` needs: files
        removed by later commits, and files no commit ever referenced (left by a write that
        was killed before it committed). Time travel to versions older than the retention
        stops working, as with ``VACUUM`` on Databricks."""


_NOT_A_TABLE = (
    "DELTA_MISSING_DELTA_TABLE",
    "DELTA_TABLE_ONLY_OPERATION",
    "TABLE_OR_VIEW_NOT_FOUND",
    "PATH_NOT_FOUND",
    "is not a Delta table",
)
_PROTOCOL_PROPERTIES = ("delta.minReaderVersion", "delta.minWriterVersion")


class _DeltaLakehouse(Lakehouse):
    """The write path and the SQL forms shared by both implementations."""

    spark: SparkResource
    write_parallelism: int = 2  # files per write of an unpartitioned table (Sail)

    # -- how a table is named and reached ----------------------------------------------------
    @abstractmethod
    def _sql_name(self, table: TableRef) -> str:
        """The table in SQL: ``delta.`/path` `` or `` `catalog`.`schema`.`table` ``."""

    @abstractmethod
    def _save(self, writer, table: TableSpec) -> None:
        """Run a DataFrameWriter into the table (``save`` by path or ``saveAsTable``)."""

    def _sql(self, statement: str) -> list:
        return self.spark.get_session().sql(statement).collect()

    def _missing(self, table: TableRef) -> TableNotFoundError:
        return TableNotFoundError(
            f"Table {_table_id(table)} does not exist ({self._where(table)}). "
            "Materialize the asset that writes it first."
        )

    def _where(self, table: TableRef) -> str:
        return f"no Delta table {self._sql_name(table)}"

    def _require_exists(self, table: TableRef) -> None:
        if self.version(table) is None:
            raise self._missing(table)

    # -- metadata through SQL ----------------------------------------------------------------
    def _sql_history(self, table: TableRef, limit: int | None = None) -> list[TableCommit] | None:
        statement = f"DESCRIBE HISTORY {self._sql_name(table)}"
        if limit is not None:
            statement += f" LIMIT {int(limit)}"
        try:
            return parse_sql_history(r.asDict() for r in self._sql(statement))
        except AnalysisException as exc:
            if any(marker in str(exc) for marker in _NOT_A_TABLE):
                return None
            raise

    def _sql_properties(self, table: TableRef) -> dict[str, str]:
        # SHOW TBLPROPERTIES and DESCRIBE EXTENDED read the log; DESCRIBE DETAIL also sizes
        # the table with a job (3-5 s on the spark lane)
        name = self._sql_name(table)
        props = {
            r["key"]: r["value"]
            for r in self._sql(f"SHOW TBLPROPERTIES {name}")
            if r["key"] not in _PROTOCOL_PROPERTIES
        }
        comment = self._described(table).get("Comment")
        if comment:
            props["comment"] = comment
        return props

    def _described(self, table: TableRef) -> dict[str, str]:
        """The '# Detailed Table Information' part of ``DESCRIBE TABLE EXTENDED``."""
        rows = self._sql(f"DESCRIBE TABLE EXTENDED {self._sql_name(table)}")
        start = next(
            (i for i, r in enumerate(rows) if r["col_name"] == "# Detailed Table Information"),
            len(rows),
        )
        return {r["col_name"]: r["data_type"] for r in rows[start + 1 :]}

    def _sql_ensure_table(self, spec: TableSpec) -> None:
        target = self._sql_name(spec)
        if self._sql_history(spec, limit=1) is None:
            self._sql(create_table_sql(target, spec))
            return
        self._verify_schema(spec)
        stored = self._sql_properties(spec)
        wanted = dict(spec.table_properties)
        if spec.description:
            wanted["comment"] = spec.description  # Spark writes it as the table's description
        changed = {k: v for k, v in wanted.items() if stored.get(k) != v}
        if changed:
            props = ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in changed.items())
            self._sql(f"ALTER TABLE {target} SET TBLPROPERTIES ({props})")

    def _sql_vacuum(self, table: TableRef, retention_hours: int, allow_short: bool) -> int:
        spark = self.spark.get_session()
        key = "spark.databricks.delta.retentionDurationCheck.enabled"
        spark.conf.set(key, "false" if allow_short else "true")
        try:
            deleted = self._sql(
                f"VACUUM {self._sql_name(table)} RETAIN {int(retention_hours)} HOURS DRY RUN"
            )
            self._sql(f"VACUUM {self._sql_name(table)} RETAIN {int(retention_hours)} HOURS")
        finally:
            spark.conf.unset(key)
        return len(deleted)

    def _verify_schema(self, spec: TableSpec) -> None:
        problems = table_schema_problems(spec, self.schema(spec))
        if problems:
            raise SchemaMismatchError(
                spec.name, problems, context="The stored schema differs from the declared one for"
            )

    @staticmethod
    def _check_retention(retention_hours: int, allow_short_retention: bool) -> None:
        if retention_hours < 0:
            raise ValueError(f"retention_hours must be >= 0, got {retention_hours}.")
        if retention_hours < DEFAULT_RETENTION_HOURS and not allow_short_retention:
            raise RetentionTooShortError(
                f"A retention of {retention_hours} h is below Delta's default of "
                f"{DEFAULT_RETENTION_HOURS} h: a reader of an older version, or a write still "
                "in progress, could lose its files. Allow it explicitly (allow_short_retention) "
                "only when nothing reads or writes the table meanwhile."
            )

    # -- writes ------------------------------------------------------------------------------
    @abstractmethod
    def _ensure_table(self, spec: TableSpec) -> None:
        """Create the table from its declared schema, or verify the existing one matches it."""

    def _conform(self, spec: TableSpec, df: DataFrame) -> DataFrame:
        plan = plan_conform(spec, df.schema)
        cols = []
        for c in spec.columns:
            if c.name in plan.filled_with_null:
                cols.append(F.lit(None).cast(c.spark_type).alias(c.name))
            elif c.name in plan.widened:
                cols.append(F.col(c.name).cast(c.spark_type).alias(c.name))
            else:
                cols.append(F.col(c.name))
        conformed = df.select(*cols)
        if self.spark.traits.not_null_check_below_filter and any(
            not c.nullable for c in spec.columns
        ):
            # Sail 0.7 checks NOT NULL columns on rows that an upstream filter has already
            # removed (its optimizer evaluates the check below the filter), so a correct,
            # filtered DataFrame is refused. A shuffle is a barrier the check is not moved
            # across; by the partition columns it also yields one file per partition value.
            # A real null still fails (tested in ml_assets_tests/resources/test_lakehouse.py).
            # Spark checks the rows it writes: no shuffle there.
            conformed = (
                conformed.repartition(*spec.partition_by)
                if spec.partition_by
                else conformed.repartition(self.write_parallelism)
            )
        return conformed

    def _run(self, spec: TableSpec, action) -> TableCommit:
        """Run a write; its commit, or for a write that changed nothing (a merge of unchanged
        rows commits no version) the current version with no rows written."""
        before = self.version(spec)
        try:
            action()
        except PySparkException as exc:
            # Sail: NOT_NULL_CONSTRAINT...; Spark with Delta: DELTA_NOT_NULL_CONSTRAINT_VIOLATED
            if "NOT_NULL_CONSTRAINT" in str(exc):
                raise WriteRefusedError(
                    f"Refusing to write to {spec.name}: {str(exc).strip().splitlines()[0]}. "
                    f"Non-nullable columns of {spec.name}: "
                    f"{[c.name for c in spec.columns if not c.nullable]}. "
                    "Quarantine rows with missing keys before writing."
                ) from exc
            raise
        head = self.history(spec, limit=1)[0]
        if head.version == before:
            return dataclasses.replace(
                head, operation="NONE (nothing changed)", metrics={"numOutputRows": 0}
            )
        return head

    def _writer(self, spec: TableSpec, df: DataFrame, mode: str):
        return self._conform(spec, df).write.format("delta").mode(mode)

    def overwrite(self, spec: TableSpec, df: DataFrame) -> TableCommit:
        self._ensure_table(spec)
        writer = self._writer(spec, df, "overwrite")
        return self._run(spec, lambda: self._save(writer, spec))

    def append(self, spec: TableSpec, df: DataFrame) -> TableCommit:
        self._ensure_table(spec)
        writer = self._writer(spec, df, "append")
        return self._run(spec, lambda: self._save(writer, spec))

    def replace_range(
        self, spec: TableSpec, df: DataFrame, *, column: str, start: dt.date, end: dt.date
    ) -> TableCommit:
        if column not in spec.column_index:
            raise ValueError(f"{spec.name} has no column {column!r} to replace a range of.")
        predicate = range_predicate(column, start, end)
        self._ensure_table(spec)
        guarded = _refused_outside_range(self._conform(spec, df), column, predicate)
        writer = guarded.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
        try:
            return self._run(spec, lambda: self._save(writer, spec))
        except PySparkException as exc:
            found = _OUTSIDE_RANGE_FOUND.search(str(exc))
            if found is None:
                raise
            raise WriteRefusedError(
                f"Refusing to replace {column} in [{start}, {end}] of {spec.name}: the DataFrame "
                f"has rows outside that range (for example {found.group(1)}). Filter the "
                "DataFrame to the range being replaced."
            ) from exc

    def merge(self, spec: TableSpec, df: DataFrame) -> TableCommit:
        keys = list(spec.primary_key)
        if not keys:
            raise ValueError(f"{spec.name} declares no primary key to merge on.")
        # The source is computed once: the key check and the merge both read it. Sail's
        # MERGE computed a source query more than once (user_activity's 212-day backfill took
        # 20.9 s, 10.7 s this way; benchmarks/README.md).
        with self.checkpoint(self._conform(spec, df)) as source:
            dupes = source.groupBy(*keys).count().where("count > 1").limit(5).collect()
            if dupes:
                sample = [tuple(r[k] for k in keys) for r in dupes]
                raise WriteRefusedError(
                    f"Refusing to merge into {spec.name}: the source has several rows for the "
                    f"same key {tuple(keys)}, e.g. {sample}. Deduplicate the source on the key "
                    "first."
                )
            self._ensure_table(spec)
            spark = self.spark.get_session()
            view = f"merge_source_{uuid.uuid4().hex}"
            source.createOrReplaceTempView(view)
            statement = merge_sql(self._sql_name(spec), view, keys, spec.column_names)
            try:
                return self._run(spec, lambda: spark.sql(statement).collect())
            finally:
                spark.catalog.dropTempView(view)

    @contextmanager
    def _persisted(self, df: DataFrame) -> Iterator[DataFrame]:
        df.persist()
        try:
            yield df
        finally:
            df.unpersist()


class LocalDeltaLakehouse(_DeltaLakehouse):
    """Delta tables under ``<warehouse_dir>/<catalog>/<schema>/<table>``."""

    warehouse_dir: str

    def _path(self, table: TableRef) -> str:
        return str(_table_id(table).location(self.warehouse_dir))

    def _sql_name(self, table: TableRef) -> str:
        return sql_quote_path(self._path(table))

    def _where(self, table: TableRef) -> str:
        return f"no Delta table at {self._path(table)}"

    def _save(self, writer, table: TableSpec) -> None:
        writer.save(self._path(table))

    def uri(self, table: TableRef) -> str:
        return "file://" + self._path(table)

    @property
    def _delta_sql(self) -> bool:
        return self.spark.traits.delta_sql

    # -- metadata: SQL where the engine has it, else delta-rs on the same files ------------
    def _delta(self, table: TableRef) -> DeltaTable | None:
        path = self._path(table)
        if not DeltaTable.is_deltatable(path):
            return None
        return DeltaTable(path)

    def _require(self, table: TableRef) -> DeltaTable:
        delta = self._delta(table)
        if delta is None:
            raise self._missing(table)
        return delta

    def version(self, table: TableRef) -> int | None:
        if self._delta_sql:
            head = self._sql_history(table, limit=1)
            return None if head is None else head[0].version
        delta = self._delta(table)
        return None if delta is None else delta.version()

    def history(self, table: TableRef, limit: int | None = None) -> list[TableCommit]:
        if self._delta_sql:
            commits = self._sql_history(table, limit)
            if commits is None:
                raise self._missing(table)
            return commits
        commits = parse_history(self._require(table).history(limit))
        return at_log_file_times(commits, self._path(table))

    def properties(self, table: TableRef) -> dict[str, str]:
        if self._delta_sql:
            self._require_exists(table)
            return self._sql_properties(table)
        delta = self._require(table)
        props = dict(delta.metadata().configuration)
        if delta.metadata().description:
            props["comment"] = delta.metadata().description
        return props

    def schema(self, table: TableRef) -> T.StructType:
        if self._delta_sql:
            self._require_exists(table)
            return self.spark.get_session().read.format("delta").load(self._path(table)).schema
        return T.StructType.fromJson(json.loads(self._require(table).schema().to_json()))

    def vacuum(
        self, table: TableRef, retention_hours: int, *, allow_short_retention: bool = False
    ) -> VacuumResult:
        self._check_retention(retention_hours, allow_short_retention)
        root = Path(self._path(table))
        if self._delta_sql:
            self._require_exists(table)
            before = _data_files(root)
            deleted = self._sql_vacuum(table, retention_hours, allow_short_retention)
            after = _data_files(root)
            freed = sum(size for path, size in before.items() if path not in after)
            return VacuumResult(str(_table_id(table)), deleted, freed, self.version(table))
        delta = self._require(table)
        options = {
            "retention_hours": retention_hours,
            "enforce_retention_duration": not allow_short_retention,
            "full": True,  # also the files no commit references (killed writes)
        }
        doomed = [root / f for f in delta.vacuum(dry_run=True, **options)]
        # delta-rs leaves the half-written files a killed writer had not renamed into place yet
        cutoff = time.time() - retention_hours * 3600
        half_written = [
            p
            for p in root.rglob("*")
            if _HALF_WRITTEN.search(p.name)
            and "_delta_log" not in p.relative_to(root).parts
            and p.is_file()
            and p.stat().st_mtime < cutoff
        ]
        freed = sum(p.stat().st_size for p in doomed + half_written if p.exists())
        deleted = len(delta.vacuum(dry_run=False, **options)) if doomed else 0
        for path in half_written:
            path.unlink(missing_ok=True)
        return VacuumResult(
            str(_table_id(table)),
            deleted + len(half_written),
            freed,
            DeltaTable(str(root)).version(),
        )

    def stale_checkpoints(self, older_than: dt.timedelta) -> list[Path]:
        """Checkpoint folders a killed run left behind (a live run removes its own)."""
        base = Path(self.warehouse_dir) / "_checkpoints"
        cutoff = dt.datetime.now(dt.UTC).timestamp() - older_than.total_seconds()
        return [p for p in base.glob("*") if p.is_dir() and p.stat().st_mtime < cutoff]

    @contextmanager
    def checkpoint(self, df: DataFrame) -> Iterator[DataFrame]:
        if self.spark.traits.cache:
            with self._persisted(df) as kept:
                yield kept
            return
        path = Path(self.warehouse_dir) / "_checkpoints" / uuid.uuid4().hex
        try:
            df.write.format("parquet").save(str(path))
            # An empty DataFrame writes no file (Sail makes no folder either): read back with
            # its schema, from an empty folder if need be, it is an empty DataFrame again.
            path.mkdir(parents=True, exist_ok=True)
            reader = self.spark.get_session().read.schema(df.schema).format("parquet")
            yield reader.load(str(path))
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # -- reads (Spark) ---------------------------------------------------------------------
    def read(
        self, table: TableRef, *, version: int | None = None, timestamp: dt.datetime | None = None
    ) -> DataFrame:
        _check_travel(version, timestamp)
        self._require_exists(table)
        reader = self.spark.get_session().read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        if timestamp is not None:
            reader = reader.option("timestampAsOf", timestamp.astimezone(dt.UTC).isoformat())
        return reader.load(self._path(table))

    # -- writes ----------------------------------------------------------------------------
    def _ensure_table(self, spec: TableSpec) -> None:
        if self._delta_sql:
            self._sql_ensure_table(spec)
            return
        delta = self._delta(spec)
        if delta is None:
            DeltaTable.create(
                self._path(spec),
                schema=spec.arrow_schema,
                partition_by=list(spec.partition_by) or None,
                name=str(spec.name),
                description=spec.description,
                configuration=spec.table_properties,
                raise_if_key_not_exists=False,
            )
            return
        self._verify_schema(spec)
        stored = delta.metadata().configuration
        changed = {k: v for k, v in spec.table_properties.items() if stored.get(k) != v}
        if changed:
            delta.alter.set_table_properties(changed, raise_if_not_exists=False)


SCRATCH_SCHEMA = "ml_assets_scratch"


class CatalogDeltaLakehouse(_DeltaLakehouse):
    """Delta tables in the session's catalog, addressed ``catalog.schema.table`` as Unity
    Catalog does. ``catalog`` replaces every table's own catalog (``main``) where the session
    has no such catalog: ``spark_catalog`` on a local Apache Spark lane; unset on Databricks.

    Needs an engine with Delta's SQL (Apache Spark, Databricks): Sail's catalog is in memory
    and has neither ``DESCRIBE HISTORY`` nor ``ALTER TABLE ... SET TBLPROPERTIES``.
    """

    catalog: str | None = None

    def _sql_name(self, table: TableRef) -> str:
        if not self.spark.traits.delta_sql:
            raise ValueError(
                f"Catalog tables need an engine with Delta's SQL (DESCRIBE HISTORY, ALTER TABLE "
                f"SET TBLPROPERTIES); the {self.spark.traits.name!r} engine has none. Use "
                "LocalDeltaLakehouse (tables by path) on it, or the spark lane."
            )
        return sql_table_name(_table_id(table), self.catalog)

    def _save(self, writer, table: TableSpec) -> None:
        writer.saveAsTable(self._sql_name(table))

    def overwrite(self, spec: TableSpec, df: DataFrame) -> TableCommit:
        # INSERT OVERWRITE keeps the table (its comment, properties, column comments);
        # saveAsTable in overwrite mode would replace it (CREATE OR REPLACE TABLE AS SELECT).
        self._ensure_table(spec)
        conformed = self._conform(spec, df)
        spark = self.spark.get_session()
        view = f"overwrite_source_{uuid.uuid4().hex}"
        conformed.createOrReplaceTempView(view)
        statement = f"INSERT OVERWRITE TABLE {self._sql_name(spec)} SELECT * FROM {view}"
        try:
            return self._run(spec, lambda: spark.sql(statement).collect())
        finally:
            spark.catalog.dropTempView(view)

    def uri(self, table: TableRef) -> str:
        return self._described(table)["Location"]

    def table_reference(self, table: TableRef) -> str:
        return sql_table_name(_table_id(table), self.catalog)

    def version(self, table: TableRef) -> int | None:
        head = self._sql_history(table, limit=1)
        return None if head is None else head[0].version

    def history(self, table: TableRef, limit: int | None = None) -> list[TableCommit]:
        commits = self._sql_history(table, limit)
        if commits is None:
            raise self._missing(table)
        return commits

    def properties(self, table: TableRef) -> dict[str, str]:
        self._require_exists(table)
        return self._sql_properties(table)

    def schema(self, table: TableRef) -> T.StructType:
        self._require_exists(table)
        return self.spark.get_session().table(self._sql_name(table)).schema

    def read(
        self, table: TableRef, *, version: int | None = None, timestamp: dt.datetime | None = None
    ) -> DataFrame:
        _check_travel(version, timestamp)
        self._require_exists(table)
        statement = f"SELECT * FROM {self._sql_name(table)}"
        if version is not None:
            statement += f" VERSION AS OF {int(version)}"
        if timestamp is not None:
            stamp = timestamp.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            statement += f" TIMESTAMP AS OF {sql_string(stamp)}"
        return self.spark.get_session().sql(statement)

    def _ensure_table(self, spec: TableSpec) -> None:
        name = _table_id(spec)
        self._sql(
            f"CREATE SCHEMA IF NOT EXISTS {sql_table_name(name, self.catalog).rsplit('.', 1)[0]}"
        )
        self._sql_ensure_table(spec)

    def vacuum(
        self, table: TableRef, retention_hours: int, *, allow_short_retention: bool = False
    ) -> VacuumResult:
        self._check_retention(retention_hours, allow_short_retention)
        self._require_exists(table)
        deleted = self._sql_vacuum(table, retention_hours, allow_short_retention)
        return VacuumResult(str(_table_id(table)), deleted, 0, self.version(table))

    def stale_checkpoints(self, older_than: dt.timedelta) -> list[Path]:
        return []  # persisted DataFrames, or scratch tables dropped by the run that made them

    @contextmanager
    def checkpoint(self, df: DataFrame) -> Iterator[DataFrame]:
        """Persisted where the engine can; on serverless compute, which cannot persist, a
        scratch Delta table in ``<catalog>.ml_assets_scratch``, dropped afterwards."""
        if self.spark.traits.cache:
            with self._persisted(df) as kept:
                yield kept
            return
        spark = self.spark.get_session()
        schema = f"`{self.catalog}`.`{SCRATCH_SCHEMA}`" if self.catalog else f"`{SCRATCH_SCHEMA}`"
        name = f"{schema}.`checkpoint_{uuid.uuid4().hex}`"
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}").collect()
        try:
            df.write.format("delta").saveAsTable(name)
            yield spark.table(name)
        finally:
            spark.sql(f"DROP TABLE IF EXISTS {name}").collect()


def _check_travel(version: int | None, timestamp: dt.datetime | None) -> None:
    if version is not None and timestamp is not None:
        raise ValueError("Read at a version or at a timestamp, not both.")
    if timestamp is not None and timestamp.tzinfo is None:
        raise ValueError(
            f"Time travel needs a timezone-aware timestamp (UTC), found naive {timestamp}."
        )


def _data_files(root: Path) -> dict[Path, int]:
    return {
        p: p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and "_delta_log" not in p.relative_to(root).parts
    }
