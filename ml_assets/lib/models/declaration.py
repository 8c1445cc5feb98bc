"""A model declared as data: what it learns from, how it is encoded, judged and registered.

A ``ModelDeclaration`` names the model (its asset ``models/<name>``), its training set
declaration, the levels of its categorical inputs, the name of its served output, the slices
its metrics are broken down by, the business costs its decision threshold is tuned with, the
registered model name and the default training settings (trials, seed, metric floors). The
training recipe (``lib/models/training``), the Pipes script and the Dagster factories read
everything model-specific from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ml_assets.lib.lakehouse import TableId
from ml_assets.lib.models.classifier import BusinessCosts
from ml_assets.lib.models.encoding import FeatureEncoding
from ml_assets.lib.models.thresholds import MetricThreshold
from ml_assets.lib.training_sets.declaration import SPLIT, TrainingSetDeclaration


class TrainingRequestError(ValueError):
    """A training request with a missing or out-of-range field."""


@dataclass(frozen=True)
class TrainingSettings:
    n_trials: int = 20
    seed: int = 7
    min_test_roc_auc: float = 0.75
    max_test_log_loss_vs_base_rate: float = 1.0  # times the log loss of the base rate

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.n_trials, int) or not 1 <= self.n_trials <= 500:
            problems.append(f"n_trials={self.n_trials!r}: expected an integer from 1 to 500")
        if not isinstance(self.seed, int):
            problems.append(f"seed={self.seed!r}: expected an integer")
        if not isinstance(self.min_test_roc_auc, int | float) or not (
            0 <= self.min_test_roc_auc <= 1
        ):
            problems.append(f"min_test_roc_auc={self.min_test_roc_auc!r}: expected 0..1")
        ratio = self.max_test_log_loss_vs_base_rate
        if not isinstance(ratio, int | float) or ratio <= 0:
            problems.append(f"max_test_log_loss_vs_base_rate={ratio!r}: expected a number > 0")
        if problems:
            raise TrainingRequestError("Invalid training settings: " + "; ".join(problems))

    def thresholds(self, base_rate_log_loss: float) -> list[MetricThreshold]:
        return [
            MetricThreshold("roc_auc", threshold=self.min_test_roc_auc),
            MetricThreshold(
                "log_loss",
                threshold=self.max_test_log_loss_vs_base_rate * base_rate_log_loss,
                greater_is_better=False,
            ),
        ]


class ModelDeclarationError(ValueError):
    """A model declaration that does not fit its training set."""


@dataclass(frozen=True)
class ModelDeclaration:
    name: str  # the asset models/<name> and the run names
    training_set: TrainingSetDeclaration
    registered_model: str  # catalog.schema.model; a deployment may set the catalog
    categories: Mapping[str, Sequence[str]]  # categorical input -> its levels, in code order
    output: str  # the served prediction's name, e.g. churn_probability
    description: str
    slices: tuple[str, ...] = ()
    costs: BusinessCosts = field(default_factory=BusinessCosts)
    settings: TrainingSettings = field(default_factory=TrainingSettings)

    def __post_init__(self) -> None:
        problems = []
        if not self.name.isidentifier():
            problems.append(f"name {self.name!r}: expected a Python identifier (an asset name)")
        try:
            TableId.parse(self.registered_model)
        except ValueError as exc:
            problems.append(f"registered_model: {exc}")
        features = set(self.training_set.model_features)
        columns = set(self.training_set.table.column_names)
        unknown = sorted(set(self.categories) - features)
        if unknown:
            problems.append(f"categories {unknown} are not model features")
        missing = sorted(set(self.slices) - columns)
        if missing:
            problems.append(f"slices {missing} are not columns of the training set")
        if problems:
            raise ModelDeclarationError(f"Model {self.name}: " + "; ".join(problems))

    @cached_property
    def encoding(self) -> FeatureEncoding:
        return FeatureEncoding(self.training_set.model_features, self.categories)

    @property
    def label(self) -> str:
        return self.training_set.labels.label

    @property
    def timestamp(self) -> str:
        return self.training_set.labels.timestamp

    @property
    def columns(self) -> tuple[str, ...]:
        """What training reads from the training set."""
        labels = self.training_set.labels
        return (
            labels.entity_key,
            *self.training_set.model_features,
            self.label,
            self.timestamp,
            SPLIT,
        )

    @property
    def order(self) -> tuple[str, ...]:
        """A fixed row order: the same data and seed give the same model."""
        return (self.timestamp, self.training_set.labels.entity_key)
