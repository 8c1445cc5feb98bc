"""A model declared as data: what it learns from, how it is encoded, judged and registered.

A ``ModelDeclaration`` names the model (its asset ``models/<name>``) and its stem (the prefix
of its serving and monitoring names), its training set declaration, the levels of its
categorical inputs, the name of its served output, the slices its metrics are broken down by,
the business costs its decision threshold is tuned with, the registered model name, the
default training settings (trials, seed, metric floors), the golden-example orderings and the
promotion policy its gate holds it to, its canary share and its drift limits. The training
recipe (``lib/models/training``), the Pipes script and the Dagster factories read everything
model-specific from here; ``lib/models/catalog.MODELS`` lists the declared models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ml_assets import names
from ml_assets.lib.lakehouse import TableId
from ml_assets.lib.models.classifier import BusinessCosts
from ml_assets.lib.models.encoding import FeatureEncoding
from ml_assets.lib.models.golden import CASES
from ml_assets.lib.models.thresholds import MetricThreshold
from ml_assets.lib.monitoring.limits import DriftLimits
from ml_assets.lib.monitoring.quality_limits import QualityLimits
from ml_assets.lib.registry.gate import GatePolicy, default_policy
from ml_assets.lib.training_sets.declaration import SPLIT, TrainingSetDeclaration


class TrainingRequestError(ValueError):
    """A training request with a missing or out-of-range field."""


@dataclass(frozen=True)
class TrainingSettings:
    n_trials: int = 20
    seed: int = 7
    min_test_roc_auc: float = 0.75
    max_test_log_loss_vs_base_rate: float = 1.0  # times the log loss of the base rate
    # numeric features set to 0 in every split before training (an ablation: what the model
    # is worth without them); recorded on the run. Empty for a normal model.
    ablated_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        ablated = self.ablated_features
        if isinstance(ablated, str) or not all(isinstance(f, str) for f in ablated):
            problems.append(f"ablated_features={ablated!r}: expected a list of feature names")
        else:
            object.__setattr__(self, "ablated_features", tuple(ablated))
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
    stem: str  # prefix of its serving and monitoring names: <stem>_predictions, ...
    slices: tuple[str, ...] = ()
    costs: BusinessCosts = field(default_factory=BusinessCosts)
    settings: TrainingSettings = field(default_factory=TrainingSettings)
    # (scores higher, scores lower) pairs of golden example names the gate holds every
    # version to (lib/models/golden)
    golden_orderings: tuple[tuple[str, str], ...] = ()
    canary_percentage: int = 10  # traffic a pending challenger gets on the endpoint
    gate: GatePolicy | None = None  # None: default_policy(settings.min_test_roc_auc)
    drift_limits: DriftLimits = field(default_factory=DriftLimits)
    quality_limits: QualityLimits = field(default_factory=QualityLimits)
    # the registered model's card: what it is for (also its ml_assets.use_case tag), and the
    # intended use and limits a consumer reads before relying on a score
    use_case: str = ""
    intended_use: str = ""

    def __post_init__(self) -> None:
        problems = []
        for field_name in ("use_case", "intended_use"):
            if not getattr(self, field_name).strip():
                problems.append(
                    f"{field_name} is empty: the registered model's card and tags state it"
                )
        unknown_cases = sorted({c for pair in self.golden_orderings for c in pair} - set(CASES))
        if unknown_cases:
            problems.append(f"golden_orderings name unknown cases {unknown_cases}")
        if not 1 <= self.canary_percentage <= 99:
            problems.append(f"canary_percentage {self.canary_percentage}: expected 1..99")
        for field_name in ("name", "stem"):
            value = getattr(self, field_name)
            if not (value.isidentifier() and value.islower()):
                problems.append(
                    f"{field_name} {value!r}: expected a lower-case identifier (asset and table "
                    "names are made of it)"
                )
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

    # asset keys (as paths) of its stages, so no stage imports another to find them
    @property
    def model_key(self) -> tuple[str, str]:
        return (names.MODELS, self.name)

    @property
    def version_key(self) -> tuple[str, str]:
        return (names.REGISTRY, f"{self.name}_version")

    @property
    def champion_key(self) -> tuple[str, str]:
        return (names.REGISTRY, f"{self.name}_champion")

    @property
    def endpoint_config_key(self) -> tuple[str, str]:
        return (names.SERVING, f"{self.stem}_endpoint_config")

    @property
    def predictions_key(self) -> tuple[str, str]:
        return (names.SERVING, f"{self.stem}_predictions")

    @property
    def inference_log_key(self) -> tuple[str, str]:
        return (names.SERVING, f"{self.stem}_inference_log")

    @property
    def feature_drift_key(self) -> tuple[str, str]:
        return (names.MONITORING, f"{self.stem}_feature_drift")

    @property
    def prediction_drift_key(self) -> tuple[str, str]:
        return (names.MONITORING, f"{self.stem}_prediction_drift")

    @property
    def model_quality_key(self) -> tuple[str, str]:
        return (names.MONITORING, f"{self.stem}_model_quality")

    @property
    def canary_verdict_key(self) -> tuple[str, str]:
        return (names.MONITORING, f"{self.stem}_canary_verdict")

    @property
    def endpoint(self) -> str:
        """The serving endpoint's name (Databricks' convention: the model's short name)."""
        return self.name

    @property
    def inference_log_table(self) -> str:
        """Databricks' naming: ``<catalog>.serving.<endpoint>_inference_log``."""
        return f"{names.CATALOG}.{names.SERVING}.{self.endpoint}_inference_log"

    @property
    def model_quality_table(self) -> str:
        """Lakehouse Monitoring's naming of a profile metrics table, per model."""
        return f"{names.CATALOG}.{names.MONITORING}.{self.name}_model_quality"

    @property
    def predictions_table(self) -> str:
        return f"{names.CATALOG}.{names.SERVING}.{self.stem}_predictions"

    @property
    def promotion_policy(self) -> GatePolicy:
        """The promotion gate's defaults (the launchpad may change them per run)."""
        return self.gate or default_policy(self.settings.min_test_roc_auc)

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
