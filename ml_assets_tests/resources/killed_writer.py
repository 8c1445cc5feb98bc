"""A process that writes to a Delta table and is killed in the middle (by the test).

    python -m ml_assets_tests.resources.killed_writer <warehouse_dir> append|merge <rows>

Prints ``writing`` just before the write starts; the test waits for that and for the write's
first uncommitted files, then sends SIGKILL.
"""

from __future__ import annotations

import sys

from pyspark.sql import functions as F

from ml_assets.lib.lakehouse import Column, TableSpec
from ml_assets.resources.lakehouse import LocalDeltaLakehouse
from ml_assets.resources.spark import EmbeddedSailSpark

SPEC = TableSpec(
    name="main.faults.big",
    columns=(
        Column("id", "bigint", False),
        Column("value", "double"),
        Column("label", "string"),
    ),
    primary_key=("id",),
)


def rows(spark, start: int, count: int):
    return spark.range(start, start + count).select(
        F.col("id"),
        (F.col("id") * 0.5).alias("value"),
        F.concat(F.lit("row-"), F.col("id").cast("string"), F.lit("-" + "x" * 40)).alias("label"),
    )


def main() -> None:
    warehouse, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spark_resource = EmbeddedSailSpark()
    lakehouse = LocalDeltaLakehouse(warehouse_dir=warehouse, spark=spark_resource)
    spark = spark_resource.get_session()
    print("writing", flush=True)
    if mode == "append":
        lakehouse.append(SPEC, rows(spark, 10**9, count))
    elif mode == "merge":  # updates the first half of the table's ids, inserts new ones
        lakehouse.merge(SPEC, rows(spark, count // 2, count))
    else:
        raise SystemExit(f"unknown mode {mode!r}; expected append or merge")
    print("committed", flush=True)


if __name__ == "__main__":
    main()
