from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from ml_assets.resources.lakehouse import LocalDeltaLakehouse
from ml_assets.resources.spark import EmbeddedSailSpark


@pytest.fixture(scope="session")
def spark_resource() -> EmbeddedSailSpark:
    return EmbeddedSailSpark()


@pytest.fixture(scope="session")
def spark(spark_resource: EmbeddedSailSpark) -> SparkSession:
    """The process's embedded Sail session, shared by every test (started once)."""
    return spark_resource.get_session()


@pytest.fixture
def lakehouse(tmp_path, spark_resource) -> LocalDeltaLakehouse:
    return LocalDeltaLakehouse(warehouse_dir=str(tmp_path / "warehouse"), spark=spark_resource)
