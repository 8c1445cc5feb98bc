"""The promotion gate's decisions on small explicit models: plain functions that score a frame
(the gate only needs ``predict``), so each breach can be produced on purpose."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from ml_assets.lib.models.thresholds import MetricThreshold
from ml_assets.lib.registry.gate import (
    GateError,
    GateMode,
    GatePolicy,
    GateSubject,
    decide,
    evaluate_gate,
    smoke_breaches,
)

RNG = np.random.default_rng(0)
X = pd.DataFrame({"x": RNG.normal(size=400)})
Y = (RNG.random(400) < 1 / (1 + np.exp(-3 * X["x"]))).astype(int).to_numpy()
GOLDEN = pd.DataFrame({"x": [3.0, -3.0]}, index=["likely", "unlikely"])
ORDERINGS = (("likely", "unlikely"),)
SCHEMA = [{"name": "x", "type": "double", "required": True}]
OUTPUT = [{"name": "churn_probability", "type": "double", "required": True}]
POLICY = GatePolicy(
    thresholds=(
        MetricThreshold("roc_auc", threshold=0.75, max_regression=0.01),
        MetricThreshold("log_loss", greater_is_better=False, max_regression=0.01),
    ),
    latency_budget_ms=50.0,
    latency_calls=20,
)


def score(probabilities: np.ndarray, subject: GateSubject) -> dict[str, float]:
    return {
        "roc_auc": float(skm.roc_auc_score(Y, probabilities)),
        "log_loss": float(skm.log_loss(Y, probabilities)),
    }


def logistic(slope: float):
    return lambda frame: 1 / (1 + np.exp(-slope * frame["x"].to_numpy()))


def subject(version: str, predict, schema=SCHEMA, run_metrics=None) -> GateSubject:
    if run_metrics is None:  # what its training run logged: the same test metrics
        run_metrics = {f"test_{k}": v for k, v in score(predict(X), None).items()}
    return GateSubject(version, predict, schema, OUTPUT, run_metrics)


def gate(candidate, champion, policy=POLICY):
    return evaluate_gate(
        candidate,
        champion,
        test_features=X,
        score=score,
        golden=GOLDEN,
        orderings=ORDERINGS,
        policy=policy,
    )


def test_with_no_champion_only_absolute_thresholds_apply():
    report = gate(subject("1", logistic(3.0)), None)
    assert report.latency_ms["rounds"] == 1  # within budget at the first round
    assert report.passed and report.baseline_version is None and report.baseline_metrics is None
    assert [c["check"] for c in report.checks] == [
        "probabilities on the test set",
        "reproduces its run's test metrics",
        "absolute thresholds",
        "golden examples",
        "single-row latency",
    ]
    assert decide(GateMode.ENABLED, report).reason == (
        "passed every gate check against absolute thresholds (no champion yet)"
    )


def test_a_better_challenger_passes_against_the_champion_on_the_same_test_set():
    report = gate(subject("2", logistic(3.0)), subject("1", logistic(0.8)))
    assert report.passed, report.breaches
    assert report.baseline_metrics["log_loss"] > report.candidate_metrics["log_loss"]
    assert decide(GateMode.ENABLED, report).promote


def test_a_passed_check_shows_its_values_against_their_limits():
    report = gate(subject("2", logistic(3.0)), subject("1", logistic(0.8)))
    detail = {c["check"]: c["detail"] for c in report.checks}
    auc, log_loss = report.candidate_metrics["roc_auc"], report.candidate_metrics["log_loss"]
    base_auc = report.baseline_metrics["roc_auc"]
    assert detail["absolute thresholds"] == f"roc_auc {auc:.4f} >= 0.7500"
    assert detail["vs champion v1 on the same test set"].startswith(
        f"roc_auc {auc:.4f} >= {base_auc - 0.01:.4f} (baseline {base_auc:.4f} - 0.01); "
        f"log_loss {log_loss:.4f} <= "
    )
    assert (
        detail["single-row latency"].startswith("p99 ")
        and "ms <= 50 ms" in detail["single-row latency"]
    )
    assert detail["golden examples"] == "likely 1.000 > unlikely 0.000"  # logistic(3.0) at ±3
    assert detail["signature matches champion"] == (
        "1 inputs and the output identical by name and type to v1's"
    )
    assert "ok" not in detail.values()


def test_a_weak_challenger_gets_one_message_listing_every_breach():
    noise = np.random.default_rng(1).random(len(X))
    weak = subject(
        "2", lambda frame: noise[: len(frame)] if len(frame) == len(X) else 0 * frame["x"] + 0.5
    )
    report = gate(weak, subject("1", logistic(3.0)))
    checks = [b.check for b in report.breaches]
    assert checks == [
        "roc_auc",
        "roc_auc vs baseline",
        "log_loss vs baseline",
        "golden examples: likely scores above unlikely",
    ]
    roc = report.breaches[1]
    assert roc.candidate == report.candidate_metrics["roc_auc"]
    assert roc.baseline == report.baseline_metrics["roc_auc"]
    assert roc.threshold.startswith(">= ") and "(baseline - 0.01)" in roc.threshold
    message = report.failure_message("main.models.churn")
    assert message.startswith(
        "Promotion refused: main.models.churn v2 breached 4 gate condition(s), compared with "
        "champion v1 on the same test set:"
    )
    assert all(f"  - {b}" in message for b in report.breaches)
    assert "The champion alias was not moved." in message
    assert not decide(GateMode.ENABLED, report).promote


def test_a_changed_signature_bad_scores_and_slow_predictions_all_breach():
    def slow_and_wrong(frame):
        time.sleep(0.003)
        return np.full(len(frame), 1.5)  # not a probability

    candidate = subject(
        "2",
        slow_and_wrong,
        schema=[{"name": "x", "type": "long", "required": True}],
        run_metrics={"test_roc_auc": 0.9, "test_log_loss": 0.3},
    )
    policy = GatePolicy(
        thresholds=(MetricThreshold("roc_auc", threshold=0.0),),
        latency_budget_ms=1.0,
        latency_calls=20,
    )
    report = gate(candidate, subject("1", logistic(3.0)), policy)
    found = {b.check: b for b in report.breaches}
    assert list(found) == [
        "test set: probability in [0, 1]",
        "signature inputs differ from champion v1",
        "golden examples: probability in [0, 1]",
        "single-row p99 latency (ms)",
    ]
    assert found["test set: probability in [0, 1]"].candidate.endswith("(+395 more)")
    assert found["signature inputs differ from champion v1"].candidate == "x: double -> long"
    assert found["golden examples: probability in [0, 1]"].candidate == "likely=1.5, unlikely=1.5"
    latency = found["single-row p99 latency (ms)"]
    assert latency.candidate >= 3.0 and latency.threshold == "<= 1.0"
    assert report.latency_ms["rounds"] == 3  # slow in every round: a real breach
    assert report.candidate_metrics == {}  # not computed from non-probabilities


def test_a_registered_model_must_reproduce_its_runs_metrics():
    candidate = subject("2", logistic(3.0), run_metrics={"test_roc_auc": 0.5})
    found = {b.check: b for b in gate(candidate, None).breaches}
    assert list(found) == ["roc_auc reproduced from run", "log_loss reproduced from run"]
    assert found["roc_auc reproduced from run"].baseline == 0.5
    assert found["log_loss reproduced from run"].baseline is None  # not logged at all


def test_golden_examples_need_one_score_each():
    (breach,) = smoke_breaches(np.array([0.5]), ["a", "b"], [])
    assert str(breach) == (
        "golden examples: one score per row: candidate 1 scores, threshold 2 scores"
    )


def test_modes_follow_mlops_stacks():
    failed = gate(subject("2", lambda f: 0 * f["x"] + 0.5), subject("1", logistic(3.0)))
    assert not failed.passed
    assert decide(GateMode.DISABLED, None) == decide(GateMode.DISABLED, failed)
    assert decide(GateMode.DISABLED, None).reason == "gate disabled: promoted without validation"
    dry = decide(GateMode.DRY_RUN, failed)
    assert dry.promote and dry.reason.startswith("dry run: promoted despite")
    assert not decide(GateMode.ENABLED, failed).promote
    with pytest.raises(GateError, match="needs a gate report"):
        decide(GateMode.ENABLED, None)


def test_a_policy_validates_itself():
    with pytest.raises(GateError) as error:
        GatePolicy(
            thresholds=(
                MetricThreshold("roc_auc", threshold=0.7),
                MetricThreshold("roc_auc", threshold=0.8),
            ),
            latency_budget_ms=0,
            latency_calls=5,
        )
    assert str(error.value) == (
        "Invalid promotion gate policy: latency_budget_ms = 0 is not positive; "
        "latency_calls = 5: a p99 needs at least 20; metrics with more than one threshold: "
        "['roc_auc']."
    )
