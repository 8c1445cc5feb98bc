"""The churn classifier, declared: who will neither log in nor buy in the next 30 days.

Its decision threshold is tuned for a retention offer: an offer costs 10, and an offer to a
user who would churn saves 30 % of a customer's value of 120.
"""

from __future__ import annotations

from ml_assets.lib.domain import COUNTRIES, PLAN_TIERS
from ml_assets.lib.models.classifier import BusinessCosts
from ml_assets.lib.models.declaration import ModelDeclaration, TrainingSettings
from ml_assets.lib.training_sets.churn import CHURN
from ml_assets.names import CHURN_MODEL_NAME

CHURN_CLASSIFIER = ModelDeclaration(
    name="churn_classifier",
    training_set=CHURN,
    registered_model=CHURN_MODEL_NAME,
    categories={"plan_tier": PLAN_TIERS, "country": COUNTRIES},
    output="churn_probability",
    description="XGBoost churn classifier: Optuna TPE search (nested MLflow runs), final model "
    "with test and slice metrics, plots, signature and data lineage on the parent run.",
    stem="churn",
    slices=("plan_tier", "country"),
    costs=BusinessCosts(customer_value=120.0, save_rate=0.3, offer_cost=10.0),
    golden_orderings=(("dormant_free", "engaged_premium"),),  # (scores higher, scores lower)
    settings=TrainingSettings(n_trials=20, seed=7, min_test_roc_auc=0.75),
    use_case="Churn risk: the probability that a user active in the last 30 days has no login "
    "and no purchase in the next 30 days, to target retention offers.",
    intended_use="Intended use: weekly scoring of users active in the last 30 days to target "
    "retention offers; the decision threshold maximizes net value per user on validation. "
    "Inputs are the point-in-time features of main.features.user_activity (at most 2 days "
    "old) and main.features.user_profile. Not for users without activity in the last 90 "
    "days, nor for decisions about individual users without review.",
)

# The names the stages after training read (registry, serving, monitoring, the gateway).
REGISTERED_MODEL = CHURN_CLASSIFIER.registered_model
ENCODING = CHURN_CLASSIFIER.encoding
COSTS = CHURN_CLASSIFIER.costs
