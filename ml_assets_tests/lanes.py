"""The engine lanes for tests: the same lakehouse contract on every engine.

``sail`` runs in every suite; the others carry the ``lanes`` marker (``make lanes``): the
``spark`` lane starts the project's local Apache Spark cluster once per test session (or
reuses a running one, e.g. after ``make spark-up``) and stops it at the end if it started it.
"""

from __future__ import annotations

import os

import pytest

from ml_assets.deployments import current_settings
from ml_assets.engines.spark_cluster import running
from ml_assets.resources.lakehouse import CatalogDeltaLakehouse, LocalDeltaLakehouse
from ml_assets.resources.spark import EmbeddedSailSpark, SparkConnectRemote, close_session

# (lane, table flavour): "path" is LocalDeltaLakehouse, "catalog" CatalogDeltaLakehouse
LAKEHOUSE_LANES = [
    pytest.param(("sail", "path"), id="sail"),
    pytest.param(("sail-cluster", "path"), id="sail-cluster", marks=pytest.mark.lanes),
    pytest.param(("spark", "path"), id="spark", marks=pytest.mark.lanes),
    pytest.param(("spark", "catalog"), id="spark-catalog", marks=pytest.mark.lanes),
]
TEST_CATALOG = "spark_catalog"  # the spark lane's session catalog stands in for "main"


@pytest.fixture(scope="session")
def spark_lane():
    """A SparkConnectRemote to the spark lane's cluster, for the whole test session."""
    config = current_settings(dict(os.environ)).spark_cluster
    with running(config):
        try:
            yield SparkConnectRemote(remote=config.remote, engine="spark")
        finally:
            close_session(config.remote)


def lakehouse_on(request, lane: str, flavour: str, warehouse: str):
    if lane == "sail":
        spark = EmbeddedSailSpark()
    elif lane == "sail-cluster":
        spark = EmbeddedSailSpark(mode="local-cluster", workers=2)
    else:
        spark = request.getfixturevalue("spark_lane")
    if flavour == "catalog":
        return CatalogDeltaLakehouse(spark=spark, catalog=TEST_CATALOG)
    return LocalDeltaLakehouse(warehouse_dir=warehouse, spark=spark)


def drop_schema(lakehouse, schema: str) -> None:
    """Catalog tables outlive a test: drop the test's schema with its tables and files."""
    if isinstance(lakehouse, CatalogDeltaLakehouse):
        lakehouse.spark.get_session().sql(
            f"DROP SCHEMA IF EXISTS `{TEST_CATALOG}`.`{schema}` CASCADE"
        ).collect()
