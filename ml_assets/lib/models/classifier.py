"""A binary classifier recipe: XGBoost with an Optuna (TPE) search, evaluation and plots.

Pure: pandas in, a trained booster, metrics and figures out. Tracking (MLflow) and
orchestration (Dagster) call these functions and record what they return; each trial is
reported through a callback so the caller can log it as a nested run.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import optuna
import pandas as pd
import xgboost as xgb
from sklearn import metrics as skm

from ml_assets.lib.models.encoding import FeatureEncoding, ModelInputError, predict

MAX_ROUNDS = 400
EARLY_STOPPING_ROUNDS = 25


@dataclass(frozen=True)
class BusinessCosts:
    """What acting on a prediction is worth: each action (an offer) costs ``offer_cost``; an
    action on a true positive earns ``save_rate`` of ``customer_value`` (for churn: the share
    of a customer's value a retention offer saves). Net value per scored user."""

    customer_value: float = 120.0
    save_rate: float = 0.3
    offer_cost: float = 10.0

    def net_value_per_user(self, y_true: np.ndarray, offered: np.ndarray) -> float:
        true_positive = int(np.sum(offered & (y_true == 1)))
        offers = int(np.sum(offered))
        saved = true_positive * self.save_rate * self.customer_value
        return float((saved - offers * self.offer_cost) / max(len(y_true), 1))


@dataclass(frozen=True)
class Split:
    features: np.ndarray
    label: np.ndarray
    encoding: FeatureEncoding

    @cached_property
    def matrix(self) -> xgb.DMatrix:
        """Built once and shared by every fit on the split (each trial of a search): XGBoost
        keeps the histogram index it builds from a matrix, so a later fit skips it."""
        return self.encoding.matrix(self.features, self.label)


def splits(
    frame: pd.DataFrame, encoding: FeatureEncoding, label: str, split_column: str
) -> dict[str, Split]:
    """Train, validation and test, encoded; each must hold both classes."""
    out = {}
    for name in ("train", "validation", "test"):
        part = frame[frame[split_column] == name]
        y = part[label].to_numpy(dtype=int)
        if len(part) == 0 or len(np.unique(y)) < 2:
            raise ModelInputError(
                f"The {name} split has {len(part)} rows and labels {sorted(np.unique(y))}: "
                "both classes are needed. Land more data or move the split cutoffs."
            )
        out[name] = Split(encoding.encode(part), y, encoding)
    return out


def params_for(trial: optuna.Trial, seed: int) -> dict[str, object]:
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "nthread": 2,
        "seed": seed,
        "max_cat_to_onehot": 16,
        "max_depth": trial.suggest_int("max_depth", 2, 8),
        "eta": trial.suggest_float("eta", 0.02, 0.3, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 30.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "lambda": trial.suggest_float("lambda", 1e-3, 10.0, log=True),
    }


@dataclass(frozen=True)
class TrialResult:
    number: int
    params: dict[str, object]
    best_iteration: int
    validation: dict[str, float]
    fit_seconds: float = 0.0  # the booster's training, early stopping included


def fit(params: Mapping[str, object], train: Split, validation: Split) -> xgb.Booster:
    return xgb.train(
        dict(params),
        train.matrix,
        num_boost_round=MAX_ROUNDS,
        evals=[(validation.matrix, "validation")],
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        verbose_eval=False,
    )


@dataclass
class SearchResult:
    best_params: dict[str, object]
    best_value: float
    trials: list[TrialResult] = field(default_factory=list)


def search(
    train: Split,
    validation: Split,
    *,
    n_trials: int,
    seed: int,
    on_trial: Callable[[TrialResult], None] | None = None,
    trial_scope: Callable[[int], AbstractContextManager] | None = None,
) -> SearchResult:
    """TPE search maximizing validation ROC AUC; each trial early-stops on validation.

    ``trial_scope(number)`` wraps each whole trial, fit included (e.g. a nested MLflow run
    that is open while the trial runs); ``on_trial`` is called inside it with the result."""
    if n_trials < 1:
        raise ModelInputError(f"n_trials must be at least 1, found {n_trials}.")
    results: list[TrialResult] = []

    def objective(trial: optuna.Trial) -> float:
        with trial_scope(trial.number) if trial_scope is not None else nullcontext():
            return run_trial(trial)

    def run_trial(trial: optuna.Trial) -> float:
        params = params_for(trial, seed)
        started = time.perf_counter()
        booster = fit(params, train, validation)
        fit_seconds = time.perf_counter() - started
        scores = predict(booster, validation.features)
        result = TrialResult(
            number=trial.number,
            params=params,
            best_iteration=int(booster.best_iteration),
            validation={
                "validation_roc_auc": float(skm.roc_auc_score(validation.label, scores)),
                "validation_log_loss": float(skm.log_loss(validation.label, scores)),
            },
            fit_seconds=fit_seconds,
        )
        results.append(result)
        if on_trial is not None:
            on_trial(result)
        return result.validation["validation_roc_auc"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    best = results[study.best_trial.number]
    return SearchResult(best_params=best.params, best_value=study.best_value, trials=results)


def choose_threshold(y: np.ndarray, scores: np.ndarray, costs: BusinessCosts) -> float:
    """The decision threshold with the best net value on validation data."""
    candidates = np.unique(np.round(scores, 3))
    values = [costs.net_value_per_user(y, scores >= t) for t in candidates]
    return float(candidates[int(np.argmax(values))])


def evaluate(
    y: np.ndarray, scores: np.ndarray, threshold: float, costs: BusinessCosts
) -> dict[str, float]:
    predicted = scores >= threshold
    return {
        "roc_auc": float(skm.roc_auc_score(y, scores)),
        "pr_auc": float(skm.average_precision_score(y, scores)),
        "log_loss": float(skm.log_loss(y, scores)),
        "brier": float(skm.brier_score_loss(y, scores)),
        "precision_at_threshold": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall_at_threshold": float(skm.recall_score(y, predicted, zero_division=0)),
        "net_value_per_user": costs.net_value_per_user(y, predicted),
        "threshold": threshold,
    }


def slice_metrics(
    frame: pd.DataFrame, y: np.ndarray, scores: np.ndarray, columns: Sequence[str]
) -> pd.DataFrame:
    """ROC AUC (when both classes occur), rows, positive rate and mean score per slice value."""
    rows = []
    for column in columns:
        for value, index in frame.groupby(column, observed=True).indices.items():
            labels = y[index]
            both = len(np.unique(labels)) == 2
            rows.append(
                {
                    "slice": column,
                    "value": str(value),
                    "rows": len(index),
                    "positive_rate": float(labels.mean()),
                    "mean_score": float(scores[index].mean()),
                    "roc_auc": float(skm.roc_auc_score(labels, scores[index])) if both else None,
                }
            )
    return pd.DataFrame(rows)


def feature_importance(booster: xgb.Booster) -> dict[str, float]:
    gain = booster.get_score(importance_type="total_gain")
    total = sum(gain.values()) or 1.0
    return dict(sorted(((k, v / total) for k, v in gain.items()), key=lambda kv: -kv[1]))


def figures(
    y: np.ndarray, scores: np.ndarray, threshold: float, importance: Mapping[str, float]
) -> dict[str, bytes]:
    """PNG images: ROC curve, PR curve, confusion matrix, feature importance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images: dict[str, bytes] = {}

    def save(name: str, fig) -> None:
        buffer = io.BytesIO()
        fig.tight_layout()
        # the saved box is what the artists need: long feature names never cut the title off
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", pad_inches=0.15)
        plt.close(fig)
        images[name] = buffer.getvalue()

    fig, ax = plt.subplots(figsize=(4.5, 4))
    skm.RocCurveDisplay.from_predictions(y, scores, ax=ax, name="test")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_title("ROC curve (test)")
    save("roc_curve.png", fig)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    skm.PrecisionRecallDisplay.from_predictions(y, scores, ax=ax, name="test")
    ax.axhline(y.mean(), linestyle=":", color="grey", label="base rate")
    ax.set_title("Precision-recall curve (test)")
    save("pr_curve.png", fig)
    fig, ax = plt.subplots(figsize=(4, 3.6))
    skm.ConfusionMatrixDisplay.from_predictions(
        y, (scores >= threshold).astype(int), ax=ax, colorbar=False
    )
    ax.set_title(f"Confusion matrix at {threshold:.3f}")
    save("confusion_matrix.png", fig)
    top = list(importance.items())[:15][::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(top) + 1.2))
    ax.barh([k for k, _ in top], [v for _, v in top])
    ax.set_xlabel("share of total gain")
    ax.set_title("Feature importance", loc="left")
    save("feature_importance.png", fig)
    return images
