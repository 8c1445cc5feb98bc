"""The training set's MLflow dataset: its schema, read from the columns' types, is the one
MLflow infers from every value (``lib.models.training.dataset_schema``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.types.utils import _infer_schema

from ml_assets.lib.models.training import TrainingSetDataset, dataset_schema

ROWS = 6
SOURCE = DeltaDatasetSource(path="file:///tmp/training_set", delta_table_version=3)


def every_kind() -> pd.DataFrame:
    """A column of each kind a training set holds, with and without nulls."""
    at = pd.date_range("2026-01-01", periods=ROWS, freq="D")
    return pd.DataFrame(
        {
            "user_id": np.arange(ROWS, dtype="int64"),
            "label": np.array([0, 1] * (ROWS // 2), dtype="int32"),
            "small": np.arange(ROWS, dtype="int8"),
            "medium": np.arange(ROWS, dtype="int16"),
            "flag": np.array([True, False] * (ROWS // 2)),
            "revenue": np.linspace(0, 1, ROWS),
            "days_since": [1.0, np.nan, 3.0, 4.0, np.nan, 6.0],
            "ratio": np.linspace(0, 1, ROWS, dtype="float32"),
            "label_ts": at.tz_localize("UTC"),
            "signup_ts": pd.Series(at.tz_localize("UTC")).where(lambda s: s.index % 2 == 0),
            "naive_ts": at,
            "split": ["train", "train", "validation", "validation", "test", "test"],
            "country": ["DE", None, "FR", "US", None, "BR"],
        }
    )


def test_the_schema_from_the_types_is_the_one_mlflow_infers_from_every_value():
    frame = every_kind()
    declared = dataset_schema(frame)
    assert declared == _infer_schema(frame)
    required = {c.name: c.required for c in declared.inputs}
    assert required["country"] is False and required["days_since"] is False
    assert required["signup_ts"] is False and required["split"] is True


def test_the_dataset_records_that_schema_and_its_profile():
    frame = every_kind()
    ours = TrainingSetDataset(df=frame, source=SOURCE, targets="label", name="t")
    mlflows = PandasDataset(df=frame, source=SOURCE, targets="label", name="t")
    assert ours.to_dict() == mlflows.to_dict()


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([1, "a", None] * 2, dtype=object),  # mixed values
        pd.Series([1, 2, None, 4, 5, 6], dtype="Int64"),  # pandas' nullable integers
        pd.Series([b"x"] * ROWS, dtype=object),  # bytes
    ],
    ids=["mixed", "nullable-int", "bytes"],
)
def test_a_column_of_another_kind_is_left_to_mlflow(column):
    frame = every_kind().assign(other=column)
    assert dataset_schema(frame) is None
    ours = TrainingSetDataset(df=frame, source=SOURCE, targets="label", name="t")
    mlflows = PandasDataset(df=frame, source=SOURCE, targets="label", name="t")
    assert ours.schema == mlflows.schema
