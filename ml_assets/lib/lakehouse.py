"""Table identifiers, declared schemas and write validation for Delta tables.

Pure logic: no Dagster, no environment. The adapter that does the I/O lives in
``ml_assets.resources.lakehouse``; everything it decides (where a table lives, whether a
DataFrame may be written, what SQL a merge runs) is decided here so it can be tested alone.

Why validation is ours and not the engine's: the embedded engine (Sail) silently truncates
``1.7`` into a ``bigint`` column and silently drops unexpected columns on append (see
DESIGN.md). Every write is therefore checked against the table's declared schema *before*
anything is written, and a mismatch is refused with one error that lists every problem.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
from pyspark.sql import types as T

from ml_assets import names

_IDENTIFIER = re.compile(r"[a-z0-9_]{1,255}")


def is_identifier(name: object) -> bool:
    """Lower-case letters, digits and underscores, the whole string (no trailing newline)."""
    return isinstance(name, str) and _IDENTIFIER.fullmatch(name) is not None


# Declared column types, by their Spark SQL name. Deliberately a small, explicit set: every
# type here has one Spark type, one Arrow type for delta-rs, and one Delta type.
_SPARK_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "bigint": T.LongType(),
    "int": T.IntegerType(),
    "double": T.DoubleType(),
    "boolean": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
}
_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "bigint": pa.int64(),
    "int": pa.int32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
SUPPORTED_DTYPES: tuple[str, ...] = tuple(_SPARK_TYPES)

# Lossless widenings accepted on write (and applied as an explicit cast), as Delta's own
# type widening does. Everything else (narrowing, string to number, timestamp_ntz to
# timestamp, ...) is refused.
_LOSSLESS_WIDENING: dict[str, frozenset[str]] = {
    "bigint": frozenset({"tinyint", "smallint", "int"}),
    "int": frozenset({"tinyint", "smallint"}),
    "double": frozenset({"float", "tinyint", "smallint", "int"}),
}


class InvalidTableNameError(ValueError):
    """A table name that is not ``catalog.schema.table`` of safe identifiers."""


class InvalidTableSpecError(ValueError):
    """A declared table that cannot exist (unknown type, duplicate column, ...)."""


class SchemaMismatchError(ValueError):
    """A write whose DataFrame does not match the table's declared schema."""

    def __init__(self, table: TableId, problems: Sequence[SchemaProblem], *, context: str):
        self.table = table
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{context} {table}: {len(self.problems)} schema problem(s):\n{lines}\n"
            "Fix the code that produces this DataFrame so it matches the declared schema, "
            "or change the table's TableSpec deliberately (a schema change of an existing "
            "table needs an overwrite of the whole table)."
        )


@dataclass(frozen=True, order=True)
class TableId:
    """A Unity-Catalog-style three-level name, ``catalog.schema.table``.

    Each part is lower-case letters, digits and underscores (names are case-insensitive, as
    in Unity Catalog, and stored lower-case), so a name can never traverse paths or inject SQL.
    """

    catalog: str
    schema: str
    table: str

    def __post_init__(self) -> None:
        for part_name in ("catalog", "schema", "table"):
            part = getattr(self, part_name)
            if not is_identifier(part):
                raise InvalidTableNameError(
                    f"Invalid {part_name} name {part!r} in table "
                    f"'{self.catalog}.{self.schema}.{self.table}': expected 1-255 characters "
                    "of lower-case letters, digits and underscores."
                )

    @classmethod
    def parse(cls, name: str) -> TableId:
        """Parse ``catalog.schema.table``; upper-case letters are folded to lower case."""
        if not isinstance(name, str):
            raise InvalidTableNameError(f"Expected a table name string, found {type(name)}.")
        parts = name.lower().split(".")
        if len(parts) != 3:
            raise InvalidTableNameError(
                f"Invalid table name {name!r}: expected three dot-separated parts "
                "'catalog.schema.table', for example 'main.raw.events'."
            )
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.table}"

    def location(self, warehouse_dir: str | Path) -> Path:
        """Where the table's Delta files live under the local warehouse."""
        return Path(warehouse_dir) / self.catalog / self.schema / self.table


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    nullable: bool = True
    description: str = ""

    @property
    def spark_type(self) -> T.DataType:
        return _SPARK_TYPES[self.dtype]


@dataclass(frozen=True)
class TableSpec:
    """A table's declared contract: name, columns, partitioning, primary key, owner."""

    name: TableId
    columns: tuple[Column, ...]
    partition_by: tuple[str, ...] = ()
    primary_key: tuple[str, ...] = ()
    description: str = ""
    owner: str = ""
    column_index: Mapping[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.name, str):  # "main.raw.events" is accepted and parsed
            object.__setattr__(self, "name", TableId.parse(self.name))
        elif not isinstance(self.name, TableId):
            raise InvalidTableSpecError(
                f"Invalid table spec: name must be a TableId or 'catalog.schema.table', "
                f"found {type(self.name).__name__} {self.name!r}."
            )
        problems: list[str] = []
        names = [c.name for c in self.columns]
        if not names:
            problems.append("it declares no columns")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"duplicate column names {dupes}")
        for c in self.columns:
            if not is_identifier(c.name):
                problems.append(
                    f"column name {c.name!r} is not lower-case letters, digits and underscores"
                )
            if c.dtype not in _SPARK_TYPES:
                problems.append(
                    f"column {c.name!r} has unknown dtype {c.dtype!r} "
                    f"(supported: {', '.join(SUPPORTED_DTYPES)})"
                )
        for role, keys in (("partition column", self.partition_by), ("key", self.primary_key)):
            for k in keys:
                if k not in names:
                    problems.append(f"{role} {k!r} is not a declared column")
        for k in self.primary_key:
            if k in names and next(c for c in self.columns if c.name == k).nullable:
                problems.append(f"key column {k!r} must be declared nullable=False")
        if problems:
            raise InvalidTableSpecError(
                f"Invalid table spec for {self.name}: " + "; ".join(problems)
            )
        object.__setattr__(self, "column_index", {c.name: c for c in self.columns})

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def spark_schema(self) -> T.StructType:
        return T.StructType(
            [T.StructField(c.name, c.spark_type, nullable=c.nullable) for c in self.columns]
        )

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, _ARROW_TYPES[c.dtype], nullable=c.nullable) for c in self.columns]
        )

    @property
    def table_properties(self) -> dict[str, str]:
        """Delta table properties recorded on the table. The owner is ``ml_assets.owner``:
        Spark and Databricks reserve ``owner`` (and ``comment``, which is the table's
        description, written as its COMMENT) and refuse them in TBLPROPERTIES."""
        return {OWNER_PROPERTY: self.owner}


@dataclass(frozen=True)
class SchemaProblem:
    column: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"column {self.column!r}: expected {self.expected}, found {self.found}"


@dataclass(frozen=True)
class ConformPlan:
    """How a valid DataFrame is brought to the declared schema: column order and casts."""

    widened: tuple[str, ...]  # columns cast losslessly to the declared type
    filled_with_null: tuple[str, ...]  # nullable declared columns absent from the DataFrame


def _describe(dtype: str, nullable: bool) -> str:
    return f"{dtype}{'' if nullable else ' not null'}"


def plan_conform(spec: TableSpec, found: T.StructType) -> ConformPlan:
    """Decide whether a DataFrame with schema ``found`` may be written to ``spec``.

    Raises SchemaMismatchError listing every problem: a column of another type (other than a
    lossless widening), a missing non-nullable column, an unexpected column.
    """
    problems: list[SchemaProblem] = []
    found_by_name = {f.name: f for f in found.fields}
    widened: list[str] = []
    filled: list[str] = []
    for col in spec.columns:
        f = found_by_name.get(col.name)
        if f is None:
            if col.nullable:
                filled.append(col.name)
            else:
                problems.append(SchemaProblem(col.name, _describe(col.dtype, False), "missing"))
            continue
        found_type = f.dataType.simpleString()
        if found_type == col.dtype:
            continue
        untyped_null = isinstance(f.dataType, T.NullType) and col.nullable
        if untyped_null or found_type in _LOSSLESS_WIDENING.get(col.dtype, ()):
            widened.append(col.name)
        else:
            problems.append(SchemaProblem(col.name, col.dtype, found_type))
    for f in found.fields:
        if f.name not in spec.column_index:
            problems.append(
                SchemaProblem(f.name, "no such column", f"unexpected {f.dataType.simpleString()}")
            )
    if problems:
        raise SchemaMismatchError(spec.name, problems, context="Refusing to write to")
    return ConformPlan(widened=tuple(widened), filled_with_null=tuple(filled))


def table_schema_problems(spec: TableSpec, found: T.StructType) -> list[SchemaProblem]:
    """Differences between an existing table's schema and the declared one (exact match)."""
    problems: list[SchemaProblem] = []
    found_by_name = {f.name: f for f in found.fields}
    for col in spec.columns:
        f = found_by_name.get(col.name)
        if f is None:
            problems.append(SchemaProblem(col.name, _describe(col.dtype, col.nullable), "missing"))
            continue
        found_desc = _describe(f.dataType.simpleString(), f.nullable)
        if found_desc != _describe(col.dtype, col.nullable):
            problems.append(SchemaProblem(col.name, _describe(col.dtype, col.nullable), found_desc))
    for f in found.fields:
        if f.name not in spec.column_index:
            problems.append(
                SchemaProblem(f.name, "no such column", f"unexpected {f.dataType.simpleString()}")
            )
    return problems


OWNER_PROPERTY = names.OWNER_PROPERTY


def sql_string(value: str) -> str:
    """A Spark SQL string literal: quotes and backslashes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_table_name(table: TableId, catalog: str | None = None) -> str:
    """A catalog table as a quoted three-part name; ``catalog`` replaces the table's own."""
    parts = (catalog or table.catalog, table.schema, table.table)
    return ".".join(f"`{p}`" for p in parts)  # each part is a validated identifier


def create_table_sql(target: str, spec: TableSpec) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the declared schema: column types, NOT NULL and
    comments, partitioning, the table's comment and properties."""
    columns = ", ".join(
        f"`{c.name}` {c.spark_type.simpleString()}{'' if c.nullable else ' NOT NULL'}"
        + (f" COMMENT {sql_string(c.description)}" if c.description else "")
        for c in spec.columns
    )
    sql = f"CREATE TABLE IF NOT EXISTS {target} ({columns}) USING delta"
    if spec.partition_by:
        sql += f" PARTITIONED BY ({', '.join(f'`{c}`' for c in spec.partition_by)})"
    if spec.description:
        sql += f" COMMENT {sql_string(spec.description)}"
    if spec.table_properties:
        props = ", ".join(
            f"{sql_string(k)} = {sql_string(v)}" for k, v in spec.table_properties.items()
        )
        sql += f" TBLPROPERTIES ({props})"
    return sql


def parse_sql_history(rows: Iterable[Mapping]) -> list[TableCommit]:
    """``DESCRIBE HISTORY`` rows (Spark, Databricks) as TableCommits, newest first. Spark gives
    operation metrics as strings and the timestamp as a naive UTC datetime (session UTC)."""
    commits = []
    for r in rows:
        stamp = r["timestamp"]
        commits.append(
            TableCommit(
                version=int(r["version"]),
                timestamp=stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp,
                operation=str(r["operation"]),
                metrics={
                    k: int(v)
                    for k, v in (r["operationMetrics"] or {}).items()
                    if str(v).lstrip("-").isdigit()
                },
            )
        )
    return sorted(commits, key=lambda c: c.version, reverse=True)


def sql_quote_path(path: str | Path) -> str:
    """A path as a backtick-quoted Delta path identifier, e.g. delta.`/x/y`."""
    return "delta.`" + str(path).replace("`", "``") + "`"


def range_predicate(column: str, start: dt.date, end: dt.date) -> str:
    """An inclusive ``replaceWhere`` predicate on a date column."""
    if not is_identifier(column):
        raise ValueError(f"Invalid column name {column!r}.")
    if not (isinstance(start, dt.date) and isinstance(end, dt.date)):
        raise TypeError(f"Expected dates for the range, found {start!r} and {end!r}.")
    if isinstance(start, dt.datetime) or isinstance(end, dt.datetime):
        raise TypeError("Expected dates for the range, found datetimes.")
    if start > end:
        raise ValueError(f"Empty range: start {start} is after end {end}.")
    return (
        f"{column} >= CAST('{start.isoformat()}' AS DATE) "
        f"AND {column} <= CAST('{end.isoformat()}' AS DATE)"
    )


def merge_sql(target: str, source_view: str, keys: Sequence[str], columns: Sequence[str]) -> str:
    """A ``MERGE INTO`` upsert on ``keys`` that rewrites a matched row only when it changed.

    Explicit column lists (not ``*``) so the statement never depends on column order, and a
    null-safe change test (``<=>``) so re-running the same merge updates nothing.
    """
    if not keys:
        raise ValueError("A merge needs at least one key column.")
    for name in (*keys, *columns, source_view):
        if not is_identifier(name):
            raise ValueError(f"Invalid identifier {name!r} in merge.")
    missing = [k for k in keys if k not in columns]
    if missing:
        raise ValueError(f"Merge keys {missing} are not among the columns {list(columns)}.")
    on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    value_cols = [c for c in columns if c not in keys]
    insert_cols = ", ".join(columns)
    insert_vals = ", ".join(f"s.{c}" for c in columns)
    stmt = f"MERGE INTO {target} AS t USING {source_view} AS s ON {on} "
    if value_cols:
        changed = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in value_cols)
        updates = ", ".join(f"t.{c} = s.{c}" for c in value_cols)
        stmt += f"WHEN MATCHED AND ({changed}) THEN UPDATE SET {updates} "
    return stmt + f"WHEN NOT MATCHED THEN INSERT ({insert_cols}) VALUES ({insert_vals})"


@dataclass(frozen=True)
class TableCommit:
    """One entry of a Delta table's history."""

    version: int
    timestamp: dt.datetime
    operation: str
    metrics: Mapping[str, int]

    @property
    def rows_written(self) -> int | None:
        """Rows the commit wrote, from the writer's operation metrics, when it recorded them."""
        for key in ("numOutputRows", "num_added_rows"):
            if key in self.metrics:
                return int(self.metrics[key])
        inserted = self.metrics.get("numTargetRowsInserted")
        updated = self.metrics.get("numTargetRowsUpdated")
        if inserted is not None or updated is not None:
            return int(inserted or 0) + int(updated or 0)
        return None


def parse_history(entries: Iterable[Mapping]) -> list[TableCommit]:
    """delta-rs ``DeltaTable.history()`` entries as TableCommits, newest first."""
    commits = []
    for e in entries:
        metrics = {
            k: int(v)
            for k, v in (e.get("operationMetrics") or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        commits.append(
            TableCommit(
                version=int(e["version"]),
                timestamp=dt.datetime.fromtimestamp(e["timestamp"] / 1000, tz=dt.UTC),
                operation=str(e.get("operation", "")),
                metrics=metrics,
            )
        )
    return sorted(commits, key=lambda c: c.version, reverse=True)


def at_log_file_times(commits: Iterable[TableCommit], table_path: str | Path) -> list[TableCommit]:
    """The commits with the timestamp the Delta protocol gives a commit without in-commit
    timestamps: its log file's modification time, which time travel by timestamp resolves
    against (and Delta Spark's ``DESCRIBE HISTORY`` reports). The writer's ``commitInfo``
    time, which delta-rs reports, can be earlier than the file's under load, and reading as
    of it then gave the version before. Rounded up to the microsecond; a commit whose log
    file is gone (log retention) keeps the writer's time."""
    log = Path(table_path) / "_delta_log"
    timed = []
    for commit in commits:
        try:
            mtime_ns = (log / f"{commit.version:020d}.json").stat().st_mtime_ns
        except FileNotFoundError:
            timed.append(commit)
            continue
        micros = -(-mtime_ns // 1000)
        stamp = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)
        timed.append(replace(commit, timestamp=stamp))
    return timed
