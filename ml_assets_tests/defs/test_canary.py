"""The canary verdict on the tiny scale: the inference log of a past canary (written by the
gateway's own logger, ingested by the inference-log asset) joined with the outcomes that
matured; promote, wait or roll back, and acting on it only when asked, through the audited
alias path."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd

from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.lib.registry import aliases
from ml_assets.lib.serving.inference_log import Answer, InferenceLogger
from ml_assets_tests.churn import (
    PREDICTIONS,
    churn_canary_verdict,
    churn_classifier_champion,
    churn_classifier_version,
    churn_inference_log,
)
from ml_assets_tests.defs.conftest import instance_at, materialization_metadata

VERDICT = "monitoring/churn_canary_verdict"
OP = "monitoring__churn_canary_verdict"


def _materialize(home, resources, assets, config=None):
    with instance_at(home) as instance:
        return dg.materialize(
            assets, resources=resources, instance=instance, run_config=config or {}
        )


def _past_canary(home, resources, challenger_scores) -> int:
    """Half of the champion's batch predictions re-told as a canary's answers: even rows by
    v1, odd rows by v2 with ``challenger_scores(p)``; logged and ingested as the gateway's
    would be. Returns the rows logged."""
    rows = resources["lakehouse"].read(PREDICTIONS).toPandas().sort_values(["scored_at", "user_id"])
    logger = InferenceLogger(home / "serving" / "inference_logs" / CHURN_CLASSIFIER.endpoint)
    logger.start()
    for i, r in enumerate(rows.itertuples()):
        version = "1" if i % 2 == 0 else "2"
        p = r.churn_probability if version == "1" else challenger_scores(r.churn_probability)
        logger.log(
            Answer(
                request_id=f"canary-{i}",
                request_time=dt.datetime(2026, 3, 12, tzinfo=dt.UTC),
                endpoint_name=CHURN_CLASSIFIER.endpoint,
                status_code=200,
                execution_time_ms=5.0,
                feature_time=pd.Timestamp(r.scored_at).to_pydatetime(),
                served_entity_name=f"churn_classifier-{version}",
                model_name=r.model_name,
                model_version=version,
                user_ids=[r.user_id],
                features=[{}],
                predictions=[float(np.clip(p, 0, 1))],
                lookup_missed=[False],
            )
        )
    logger.close()
    _materialize(home, resources, [churn_inference_log])
    return len(rows)


def _verdict(home, resources, **config):
    result = _materialize(
        home, resources, [churn_canary_verdict], {"ops": {OP: {"config": config}}}
    )
    return materialization_metadata(result, VERDICT)


def _registry(resources):
    registry = resources["model_registry"].open()
    return registry, registry.full_name(CHURN_CLASSIFIER.registered_model)


def test_no_challenger_no_verdict_then_too_few_outcomes_wait(home, resources):
    assert _verdict(home, resources)["verdict"] == "none"
    _materialize(home, resources, [churn_classifier_version])  # v2 pending as the canary
    _past_canary(home, resources, lambda p: p)
    meta = _verdict(home, resources)  # the default minimum: 500 matured rows per version
    assert meta["verdict"] == "wait" and "each arm needs 500" in meta["reason"]
    assert 0 < meta["champion_rows"] < 500 and 0 < meta["challenger_rows"] < 500
    registry, name = _registry(resources)
    assert str(registry.by_alias(name, aliases.CHALLENGER).version) == "2"
    assert registry.version(name, 2).tags["ml_assets.canary.verdict"] == "wait"


def test_a_worse_canary_is_rolled_back_only_when_asked(home, resources):
    _materialize(home, resources, [churn_classifier_version])
    _past_canary(home, resources, lambda p: 1 - p)  # the challenger has it backwards
    told = _verdict(home, resources, min_rows_per_arm=100)
    assert told["verdict"] == "rollback" and told["acted"] == "no (act is off)"
    assert told["ci_low"] > 0 and told["min_detectable_difference"] > 0
    registry, name = _registry(resources)
    assert str(registry.by_alias(name, aliases.CHALLENGER).version) == "2"  # untouched
    acted = _verdict(home, resources, min_rows_per_arm=100, act=True)
    assert acted["acted"] == "yes: rollback"
    assert registry.by_alias(name, aliases.CHALLENGER) is None  # no longer served
    assert str(registry.by_alias(name, aliases.CHAMPION).version) == "1"
    audit = registry.version(name, 2).tags
    assert audit["ml_assets.audit.refused.reason"].startswith("canary verdict rollback")


def test_an_equal_canary_is_promoted_through_the_audited_path(home, resources):
    _materialize(home, resources, [churn_classifier_version])
    # the gate passes v2 but, in a canary rollout, leaves it the challenger at the canary share
    gated = _materialize(
        home,
        resources,
        [churn_classifier_champion],
        {"ops": {"registry__churn_classifier_champion": {"config": {"rollout": "canary"}}}},
    )
    held = materialization_metadata(gated, "registry/churn_classifier_champion")
    assert held["rollout"] == "canary" and held["champion_version"] == "1"
    registry, name = _registry(resources)
    assert str(registry.by_alias(name, aliases.CHALLENGER).version) == "2"
    assert "ml_assets.audit.canary.reason" in registry.version(name, 2).tags
    _past_canary(home, resources, lambda p: p)
    # the same scores on different users: a couple of hundred rows each cannot tell them
    # apart within the default margin of 0.01 (the interval is wider than that)
    unsure = _verdict(home, resources, min_rows_per_arm=100, act=True)
    assert unsure["verdict"] == "wait" and "Inconclusive" in unsure["reason"]
    assert unsure["min_detectable_difference"] > 0.01
    assert unsure["acted"] == "no (nothing to act on)"
    meta = _verdict(home, resources, min_rows_per_arm=100, margin=0.3, act=True)
    assert meta["verdict"] == "promote" and meta["acted"] == "yes: promote"
    assert meta["ci_high"] < 0.3  # not worse by more than the margin
    registry, name = _registry(resources)
    assert str(registry.by_alias(name, aliases.CHAMPION).version) == "2"
    assert str(registry.by_alias(name, aliases.PREVIOUS_CHAMPION).version) == "1"
    assert (
        registry.version(name, 2)
        .tags["ml_assets.audit.promoted.reason"]
        .startswith("canary verdict promote")
    )
