"""The served form of a declared classifier: an MLflow pyfunc whose ``predict`` returns the
positive class's probability under the model's output name (MLflow's own xgboost pyfunc
returns class labels for a classifier, and cannot take string categoricals).

The model file is the booster saved by XGBoost; the categorical levels and the column order
travel with it, so a request with ``plan_tier = "premium"`` is encoded as in training and an
unseen level becomes missing, as XGBoost treats it.
"""

from __future__ import annotations

import json

import mlflow.pyfunc
import pandas as pd
import xgboost as xgb

from ml_assets.lib.models.encoding import FeatureEncoding, predict

BOOSTER = "booster"
SCHEMA = "schema"


class ProbabilityModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        with open(context.artifacts[SCHEMA]) as f:
            schema = json.load(f)
        self.encoding = FeatureEncoding(tuple(schema["feature_columns"]), schema["categories"])
        self.booster = xgb.Booster()
        self.booster.load_model(context.artifacts[BOOSTER])
        self.booster.best_iteration = int(schema["best_iteration"])
        self.output = schema.get("output", "churn_probability")  # versions logged before names

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        scores = predict(self.booster, self.encoding.encode(model_input))
        return pd.Series(scores, name=self.output)
