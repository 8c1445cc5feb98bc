"""The lakehouse adapter: Delta tables addressed by ``catalog.schema.table``.

Every write is validated against the table's declared ``TableSpec`` before anything is
written (``ml_assets.lib.lakehouse.plan_conform``); a refused write leaves the table exactly
as it was. Reads and writes go through Spark (Spark Connect), table maintenance and history
through delta-rs on the same files, because the embedded engine has no ``DESCRIBE HISTORY``.
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
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_assets.lib.lakehouse import (
    SchemaMismatchError,
    TableCommit,
    TableId,
    TableSpec,
    merge_sql,
    parse_history,
    plan_conform,
    range_predicate,
    sql_quote_path,
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

        Idempotent: running it twice with the same ``df`` leaves the same rows.
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
    def properties(self, table: TableRef) -> dict[str, str]: ...

    @abstractmethod
    def schema(self, table: TableRef) -> T.StructType:
        """The table's actual schema as stored."""

    @abstractmethod
    def uri(self, table: TableRef) -> str: ...

    @abstractmethod
    def checkpoint(self, df: DataFrame) -> AbstractContextManager[DataFrame]:
        """``df`` computed once and read back from storage, for as long as the block runs.

        The embedded engine's ``cache()`` is a no-op, so a DataFrame used by several actions
        (counts, then two writes) would be recomputed by each; this computes it once.
        """

    def exists(self, table: TableRef) -> bool:
        return self.version(table) is not None

    @abstractmethod
    def vacuum(
        self, table: TableRef, retention_hours: int, *, allow_short_retention: bool = False
    ) -> VacuumResult:
        """Delete the table's files that no version within ``retention_hours`` needs: files
        removed by later commits, and files no commit ever referenced (left by a write that
        was killed before it committed). Time travel to versions older than the retention
        stops working, as with ``VACUUM`` on Databricks."""


class LocalDeltaLakehouse(Lakehouse):
    """Delta tables under ``<warehouse_dir>/<catalog>/<schema>/<table>``."""

    warehouse_dir: str
    spark: SparkResource
    write_parallelism: int = 2  # files per write of an unpartitioned table

    # -- locations and metadata (delta-rs) -------------------------------------------------
    def _path(self, table: TableRef) -> str:
        return str(_table_id(table).location(self.warehouse_dir))

    def uri(self, table: TableRef) -> str:
        return "file://" + self._path(table)

    def _delta(self, table: TableRef) -> DeltaTable | None:
        path = self._path(table)
        if not DeltaTable.is_deltatable(path):
            return None
        return DeltaTable(path)

    def _require(self, table: TableRef) -> DeltaTable:
        delta = self._delta(table)
        if delta is None:
            raise TableNotFoundError(
                f"Table {_table_id(table)} does not exist (no Delta table at {self._path(table)}). "
                "Materialize the asset that writes it first."
            )
        return delta

    def version(self, table: TableRef) -> int | None:
        delta = self._delta(table)
        return None if delta is None else delta.version()

    def history(self, table: TableRef, limit: int | None = None) -> list[TableCommit]:
        return parse_history(self._require(table).history(limit))

    def properties(self, table: TableRef) -> dict[str, str]:
        return dict(self._require(table).metadata().configuration)

    def schema(self, table: TableRef) -> T.StructType:
        return T.StructType.fromJson(json.loads(self._require(table).schema().to_json()))

    def vacuum(
        self, table: TableRef, retention_hours: int, *, allow_short_retention: bool = False
    ) -> VacuumResult:
        if retention_hours < 0:
            raise ValueError(f"retention_hours must be >= 0, got {retention_hours}.")
        if retention_hours < DEFAULT_RETENTION_HOURS and not allow_short_retention:
            raise RetentionTooShortError(
                f"A retention of {retention_hours} h is below Delta's default of "
                f"{DEFAULT_RETENTION_HOURS} h: a reader of an older version, or a write still "
                "in progress, could lose its files. Allow it explicitly (allow_short_retention) "
                "only when nothing reads or writes the table meanwhile."
            )
        delta = self._require(table)
        root = Path(self._path(table))
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
        path = Path(self.warehouse_dir) / "_checkpoints" / uuid.uuid4().hex
        try:
            df.write.format("parquet").save(str(path))
            yield self.spark.get_session().read.format("parquet").load(str(path))
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # -- reads (Spark) ---------------------------------------------------------------------
    def read(
        self, table: TableRef, *, version: int | None = None, timestamp: dt.datetime | None = None
    ) -> DataFrame:
        if version is not None and timestamp is not None:
            raise ValueError("Read at a version or at a timestamp, not both.")
        self._require(table)
        reader = self.spark.get_session().read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        if timestamp is not None:
            if timestamp.tzinfo is None:
                raise ValueError(
                    f"Time travel needs a timezone-aware timestamp (UTC), found naive {timestamp}."
                )
            reader = reader.option("timestampAsOf", timestamp.astimezone(dt.UTC).isoformat())
        return reader.load(self._path(table))

    # -- writes ----------------------------------------------------------------------------
    def _ensure_table(self, spec: TableSpec) -> None:
        """Create the table from its declared schema, or verify the existing one matches it."""
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
        problems = table_schema_problems(spec, self.schema(spec))
        if problems:
            raise SchemaMismatchError(
                spec.name, problems, context="The stored schema differs from the declared one for"
            )
        stored = delta.metadata().configuration
        changed = {k: v for k, v in spec.table_properties.items() if stored.get(k) != v}
        if changed:
            delta.alter.set_table_properties(changed, raise_if_not_exists=False)

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
        if any(not c.nullable for c in spec.columns):
            # Sail 0.7 checks NOT NULL columns on rows that an upstream filter has already
            # removed (its optimizer evaluates the check below the filter), so a correct,
            # filtered DataFrame is refused. A shuffle is a barrier the check is not moved
            # across; by the partition columns it also yields one file per partition value.
            # A real null still fails (tested in ml_assets_tests/resources/test_lakehouse.py).
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
        except AnalysisException as exc:
            if "NOT_NULL_CONSTRAINT" in str(exc):
                raise WriteRefusedError(
                    f"Refusing to write to {spec.name}: {exc}. "
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
        return self._run(spec, lambda: writer.save(self._path(spec)))

    def append(self, spec: TableSpec, df: DataFrame) -> TableCommit:
        self._ensure_table(spec)
        writer = self._writer(spec, df, "append")
        return self._run(spec, lambda: writer.save(self._path(spec)))

    def replace_range(
        self, spec: TableSpec, df: DataFrame, *, column: str, start: dt.date, end: dt.date
    ) -> TableCommit:
        if column not in spec.column_index:
            raise ValueError(f"{spec.name} has no column {column!r} to replace a range of.")
        predicate = range_predicate(column, start, end)
        self._ensure_table(spec)
        conformed = self._conform(spec, df)
        outside = conformed.where(~F.expr(predicate) | F.col(column).isNull()).limit(1).collect()
        if outside:
            raise WriteRefusedError(
                f"Refusing to replace {column} in [{start}, {end}] of {spec.name}: the DataFrame "
                f"has rows outside that range (for example {column}={outside[0][column]}). "
                "Filter the DataFrame to the range being replaced."
            )
        writer = conformed.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
        return self._run(spec, lambda: writer.save(self._path(spec)))

    def merge(self, spec: TableSpec, df: DataFrame) -> TableCommit:
        keys = list(spec.primary_key)
        if not keys:
            raise ValueError(f"{spec.name} declares no primary key to merge on.")
        conformed = self._conform(spec, df)
        dupes = conformed.groupBy(*keys).count().where("count > 1").limit(5).collect()
        if dupes:
            sample = [tuple(r[k] for k in keys) for r in dupes]
            raise WriteRefusedError(
                f"Refusing to merge into {spec.name}: the source has several rows for the same "
                f"key {tuple(keys)}, e.g. {sample}. Deduplicate the source on the key first."
            )
        self._ensure_table(spec)
        spark = self.spark.get_session()
        view = f"merge_source_{uuid.uuid4().hex}"
        conformed.createOrReplaceTempView(view)
        statement = merge_sql(sql_quote_path(self._path(spec)), view, keys, spec.column_names)
        try:
            return self._run(spec, lambda: spark.sql(statement).collect())
        finally:
            spark.catalog.dropTempView(view)
