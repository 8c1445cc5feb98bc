from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from ml_assets.resources.lakehouse import LocalDeltaLakehouse
from ml_assets.resources.spark import EmbeddedSailSpark
from ml_assets_tests import postgres
from ml_assets_tests.lanes import spark_lane  # noqa: F401  (the spark lane's cluster fixture)


@pytest.fixture(scope="session")
def spark_resource() -> EmbeddedSailSpark:
    return EmbeddedSailSpark()


@pytest.fixture(scope="session")
def spark(spark_resource: EmbeddedSailSpark) -> SparkSession:
    """The process's embedded Sail session, shared by every test (started once)."""
    return spark_resource.get_session()


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server (trust authentication: any password is accepted)."""
    try:
        with postgres.start() as url:
            yield url
    except postgres.PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server for this test: {exc}")


@pytest.fixture
def lakehouse(tmp_path, spark_resource) -> LocalDeltaLakehouse:
    return LocalDeltaLakehouse(warehouse_dir=str(tmp_path / "warehouse"), spark=spark_resource)
