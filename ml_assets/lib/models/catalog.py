"""Every declared model, by name: what the Dagster factories build and the Pipes script trains.

Adding a model is one line here, after its declaration module.
"""

from __future__ import annotations

from collections.abc import Mapping

from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.lib.models.declaration import ModelDeclaration
from ml_assets.lib.models.purchase_propensity import PURCHASE_PROPENSITY

MODELS: Mapping[str, ModelDeclaration] = {
    m.name: m for m in (CHURN_CLASSIFIER, PURCHASE_PROPENSITY)
}


def model_named(name: str) -> ModelDeclaration:
    if name not in MODELS:
        raise KeyError(
            f"No model declaration named {name!r}; declared: {sorted(MODELS)}. Declare a "
            "ModelDeclaration and add it to ml_assets.lib.models.catalog.MODELS."
        )
    return MODELS[name]
