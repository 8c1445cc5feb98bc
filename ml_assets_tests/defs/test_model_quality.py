"""``make check --inject regression``: after a clean run (model_quality_within_limits passes on
the outcomes of the scoring days), a churn version trained with its engagement features zeroed
is promoted by a dry-run gate; the check fails with ERROR and diagnoses a rollout regression
(the previous version, re-scored on the same rows, does better), and the model's quality sensor
rolls the champion back once. The decay branch of the sensor asks for retraining instead."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import names
from ml_assets.definitions import build_definitions
from ml_assets.deployments import build_resources
from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.lib.monitoring.model_quality import model_quality_table
from ml_assets.lib.registry import aliases
from ml_assets.programs import check
from ml_assets_tests.defs.conftest import instance_at, tiny_settings

# Its module fixture runs `make check --inject regression` (over a minute): handed out first.
pytestmark = pytest.mark.whole_graph

QUALITY_CHECK = dg.AssetCheckKey(
    dg.AssetKey(CHURN_CLASSIFIER.model_quality_key), names.CHECK_MODEL_QUALITY
)


@pytest.fixture(scope="module")
def regressed(tmp_path_factory) -> tuple[Path, int, Path, str]:
    home = tmp_path_factory.mktemp("regressed") / "home"
    junit = home.parent / "checks.xml"
    status = check.main(["--inject", "regression", "--home", str(home), "--junit", str(junit)])
    return home, status, junit


def _evaluations(home: Path) -> list[dg.AssetCheckEvaluation]:
    """Every evaluation of the churn quality check, oldest first."""
    with instance_at(home) as instance:
        records = instance.event_log_storage.get_asset_check_execution_history(
            QUALITY_CHECK, limit=10
        )
    found = []
    for record in reversed(records):
        data = record.event.dagster_event.event_specific_data if record.event else None
        if isinstance(data, dg.AssetCheckEvaluation):
            found.append(data)
    return found


def _meta(evaluation: dg.AssetCheckEvaluation) -> dict[str, object]:
    return {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}


def test_the_clean_champion_passes_and_the_regressed_one_fails_with_error(regressed):
    home, status, junit = regressed
    assert status == 1
    failures = {
        (case.get("classname"), case.get("name"))
        for case in ET.parse(junit).getroot().iter("testcase")
        if case.find("failure") is not None
    }
    assert failures == {("monitoring/churn_model_quality", names.CHECK_MODEL_QUALITY)}
    clean, bad = _evaluations(home)
    assert clean.passed and _meta(clean)["level"] == "ok" and _meta(clean)["judged_windows"] >= 2
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
    meta = _meta(bad)
    assert (meta["level"], meta["action"], meta["cause"]) == ("error", "rollback", "regression")
    assert (meta["champion_version"], meta["previous_champion_version"]) == ("2", "1")
    assert "A rollout regression: the previous version does better on the same rows" in (
        bad.description
    )


def test_the_metrics_table_holds_both_versions_on_the_same_windows(regressed):
    home, _, _ = regressed
    lakehouse = build_resources(tiny_settings(home))["lakehouse"]
    rows = lakehouse.read(model_quality_table(CHURN_CLASSIFIER)).toPandas()
    batch = rows[rows.source == "batch"]
    by_version = {v: set(g.window_start) for v, g in batch.groupby("model_version")}
    assert by_version[1] == by_version[2] and len(by_version[1]) >= 2
    v2 = batch[batch.model_version == 2]
    assert (v2.previous_version == 1).all()
    assert (v2.previous_roc_auc - v2.roc_auc >= 0.02).all()  # v1 re-scored on v2's rows
    v1 = batch[batch.model_version == 1]
    # v1's own rows and v1 re-scored on v2's rows are the same users: the same quality
    assert sorted(v1.roc_auc.round(6)) == sorted(v2.previous_roc_auc.round(6))
    assert (rows.rows >= 200).all() and rows.calibration.str.startswith("[{").all()


def test_the_sensor_rolled_the_champion_back_once_through_the_audited_path(regressed):
    home, _, _ = regressed
    registry = build_resources(tiny_settings(home))["model_registry"].open()
    name = registry.full_name(CHURN_CLASSIFIER.registered_model)
    assert str(registry.by_alias(name, aliases.CHAMPION).version) == "1"
    demoted = registry.version(name, 2).tags
    assert demoted[f"{names.TAG_AUDIT_PREFIX}.rolled_back.reason"].startswith(
        "model_quality_within_limits: v2 (batch)"
    )
    assert demoted[names.TAG_ABLATED_FEATURES].startswith("days_since_last_login")
    sensor = build_definitions(tiny_settings(home)).get_sensor_def("churn_model_quality_sensor")
    breach = f"rollback-v2-{_meta(_evaluations(home)[-1])['breach_started']}"
    with (
        instance_at(home) as instance,
        dg.build_sensor_context(instance=instance, cursor=breach) as context,
    ):
        again = sensor(context)
    assert isinstance(again, dg.SkipReason) and "already been acted on" in again.skip_message


def test_decay_asks_for_the_models_retraining_not_a_rollback(tmp_path):
    defs = build_definitions(tiny_settings(tmp_path / "home"))
    sensor = defs.get_sensor_def("churn_model_quality_sensor")
    with dg.DagsterInstance.ephemeral() as instance:
        with dg.build_sensor_context(instance=instance) as context:
            assert "has not been evaluated yet" in sensor(context).skip_message
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=QUALITY_CHECK.asset_key,
                check_name=QUALITY_CHECK.name,
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                description="v3 (batch): decay",
                metadata={
                    "level": "error",
                    "action": "retrain",
                    "cause": "decay",
                    "champion_version": "3",
                    "breach_started": "2026-04-06",
                },
            )
        )
        with dg.build_sensor_context(instance=instance) as context:
            result = sensor(context)
    [request] = result.run_requests
    assert request.job_name == names.RETRAINING_JOB and result.cursor == "retrain-v3-2026-04-06"
    selected = {k.to_user_string() for k in request.asset_selection}
    assert "registry/churn_classifier_champion" in selected
    assert not any("purchase" in k for k in selected)
    assert request.tags["ml_assets/trigger"] == "model_quality"
