"""A registered version is complete with a signature, an input example and its lineage tags."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
from mlflow.models import infer_signature

from ml_assets import names
from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.lib.registry.completeness import required_tags, version_completeness

SIGNATURE = infer_signature(
    pd.DataFrame({"events_7d": [1.0]}), pd.Series([0.5], name="churn_probability")
)
TAGS = {tag: "x" for tag in required_tags(CHURN_CLASSIFIER)}


def info(signature=SIGNATURE, example={"type": "dataframe"}):  # noqa: B006
    return SimpleNamespace(signature=signature, saved_input_example_info=example)


def test_a_complete_version_passes():
    outcome = version_completeness(CHURN_CLASSIFIER, "3", TAGS, info())
    assert outcome.passed, outcome.description
    assert len(required_tags(CHURN_CLASSIFIER)) == 14  # 9 fixed, 2 feature tables, 3 splits
    assert names.TAG_TABLE_VERSION_PREFIX + "main.features.user_activity" in TAGS


def test_no_signature_no_example_or_a_wrong_output_fails_naming_each():
    outcome = version_completeness(CHURN_CLASSIFIER, "3", TAGS, info(None, None))
    assert not outcome.passed
    assert outcome.description == "v3: no signature; no input example"
    wrong = infer_signature(pd.DataFrame({"x": [1.0]}), pd.Series([1], name="label"))
    outcome = version_completeness(CHURN_CLASSIFIER, "3", TAGS, info(wrong))
    assert "the signature's output is ['label'], expected ['churn_probability']" in (
        outcome.description
    )
    empty = {**TAGS, names.TAG_WINDOW_PREFIX + "test": " "}
    outcome = version_completeness(CHURN_CLASSIFIER, "3", empty, info())
    assert outcome.observed["lineage_tags_missing"] == [names.TAG_WINDOW_PREFIX + "test"]
