"""Drift monitoring on the tiny scale: clean data passes the drift checks; a behaviour shift
(``make check --inject drift``) fails ``feature_drift_within_limits`` with ERROR, warns on the
scores, and makes the retraining sensor ask for exactly one run per breach."""

from __future__ import annotations

import base64
import datetime as dt
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import names
from ml_assets.definitions import build_definitions
from ml_assets.defs.automation import latest_evaluation
from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.lib.source import SCALES
from ml_assets.programs import check
from ml_assets.programs.reporting import partition_metadata, run_check_results, step_failure
from ml_assets.resources.mlflow import LocalMlflow
from ml_assets_tests.churn import FEATURE_DRIFT, PREDICTION_DRIFT, PREDICTIONS
from ml_assets_tests.defs.conftest import (
    build_resources,
    instance_at,
    materialization_metadata,
    tiny_settings,
)

# Its module fixture runs `make check --inject drift` (about two minutes): handed out first.
pytestmark = pytest.mark.whole_graph

TINY = SCALES["tiny"]
SHIFT = TINY.end_date - dt.timedelta(days=check.DRIFT_DAYS_BEFORE_END)


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in run_check_results(result)}


def _retraining_sensor(home: Path, cursor: str | None = None):
    sensor = build_definitions(tiny_settings(home)).get_sensor_def("churn_drift_retraining_sensor")
    with (
        instance_at(home) as instance,
        dg.build_sensor_context(instance=instance, cursor=cursor) as context,
    ):
        return sensor(context)


def test_clean_windows_stay_within_limits_with_a_report_and_a_row_per_day(ingested, ingested_once):
    home, result = ingested
    run_home, _ = ingested_once  # where the run wrote: the paths in its metadata
    drift = materialization_metadata(result, "monitoring/churn_feature_drift")
    assert drift["windows"] == TINY.days and drift["windows_compared"] >= 25
    assert drift["windows_without_users"] == []
    # the source lands 92 days before the first label: every window fits, every input compared
    assert drift["columns_left_out"] == {}
    assert drift["columns_compared"] == len(CHURN_CLASSIFIER.training_set.model_features) == 21
    # each partition is its own window: its share, or why it was not compared
    windows = partition_metadata(result, "monitoring/churn_feature_drift")
    compared = {d: m for d, m in windows.items() if m["compared"] == "yes"}
    assert len(windows) == TINY.days and len(compared) == drift["windows_compared"]
    assert all(m["window"] == d for d, m in windows.items())
    assert all("share_drifted" not in m for d, m in windows.items() if d not in compared)
    assert all(m["share_drifted"] < 0.3 for m in compared.values())
    assert len({m["share_drifted"] for m in compared.values()}) > 1  # a curve, not one value
    # ... drawn: the share of every compared window so far, with the warn and error levels
    image = drift["drift_over_time"].removeprefix("![drift](data:image/png;base64,")
    assert base64.b64decode(image.removesuffix(")"))[:8] == b"\x89PNG\r\n\x1a\n"
    latest_day = drift["latest_window"]
    assert latest_day == max(compared)
    latest_window = compared[latest_day]
    report = Path(latest_window["report"])
    assert report.is_file() and report.parent == run_home / "reports" / "churn_feature_drift"
    html = report.read_text()
    assert "<html" in html[:2000].lower()
    # the report names what it compares, in its title and first lines
    assert f"<title>Feature drift of churn_classifier, window {latest_day}</title>" in html
    header = html[html.index("<header") : html.index("</header>")]
    for fact in (
        f"{latest_day} (users eligible that day",
        "main.training_sets.churn_training_set v",  # the reference table and its version
        "main.models.churn_classifier",  # the model version (no champion yet when it ran)
        "WARN when at least 30% of the columns drift; ERROR when at least 40% do in 2 of the "
        "last 5",
    ):
        assert fact in header, fact
    # reachable over HTTP: an artifact of the monitor's MLflow run, linked in the MLflow UI
    url = latest_window["report_url"]
    assert url.startswith("http://127.0.0.1:5000/#/experiments/")
    run_id = url.split("/runs/")[1].split("/")[0]
    assert url.endswith(
        f"/runs/{run_id}/artifactPath/reports/churn_feature_drift/{latest_day}.html"
    )
    client = LocalMlflow(home=str(home)).client()
    monitor_run = client.get_run(run_id)
    assert monitor_run.data.tags["ml_assets.monitor"] == "churn_feature_drift"
    assert monitor_run.data.tags["ml_assets.dagster_run_id"] == result.run_id
    logged = client.download_artifacts(run_id, f"reports/churn_feature_drift/{latest_day}.html")
    assert Path(logged).read_text() == html
    shares = client.get_metric_history(run_id, "share_drifted")
    assert len(shares) == drift["windows_compared"]  # the drift over time, in MLflow too
    # reports kept: the latest window's, and any at or above the warning level (none here)
    assert sorted(p.name for p in report.parent.iterdir()) == [report.name]
    assert drift["reports_written"] == 1
    lakehouse = build_resources(tiny_settings(home))["lakehouse"]
    rows = lakehouse.read(FEATURE_DRIFT).toPandas()
    assert len(rows) == TINY.days  # one row per window; the reference period not compared
    assert rows.compared.sum() == drift["windows_compared"]
    by_window = {
        r.window_date.isoformat(): r.share_drifted for r in rows[rows.compared].itertuples()
    }
    assert by_window == pytest.approx(
        {d: m["share_drifted"] for d, m in compared.items()}, abs=1e-4
    )
    latest = rows[rows.compared].sort_values("window_date").iloc[-1]
    scores = json.loads(latest.column_scores)
    assert len(scores) == 21 and {"method", "score", "threshold", "drifted"} <= set(
        scores["events_7d"]
    )
    assert latest.share_drifted == pytest.approx(latest_window["share_drifted"], abs=1e-4)
    assert all(
        m["report"] == "not kept for this window" for d, m in compared.items() if d != latest_day
    )
    checks = _checks(result)
    assert checks[names.CHECK_FEATURE_DRIFT].passed
    assert checks[names.CHECK_FEATURE_DRIFT].metadata["level"].value == "ok"
    assert checks[names.CHECK_PREDICTION_DRIFT].passed
    predictions = lakehouse.read(PREDICTION_DRIFT).toPandas()
    assert len(predictions) == 1 and not predictions.drifted.iloc[0]
    assert Path(predictions.report_path.iloc[0]).is_file()
    skipped = _retraining_sensor(home)
    assert isinstance(skipped, dg.SkipReason) and "level ok" in skipped.skip_message


@pytest.fixture(scope="module")
def drifted(tmp_path_factory) -> tuple[Path, int, Path]:
    """``make check --inject drift``: the whole graph on a source whose users have 60 % fewer
    sessions from three weeks before the calendar ends."""
    home = tmp_path_factory.mktemp("drifted") / "home"
    junit = home.parent / "checks.xml"
    status = check.main(["--inject", "drift", "--home", str(home), "--junit", str(junit)])
    return home, status, junit


def test_make_check_fails_on_injected_drift_and_names_the_check(drifted):
    home, status, junit = drifted
    assert status == 1
    failures = {
        (case.get("classname"), case.get("name")): case.find("failure").get("message")
        for case in ET.parse(junit).getroot().iter("testcase")
        if case.find("failure") is not None
    }
    # both models read the thinned sessions: each one's drift check fails, nothing else does
    assert sorted(failures) == [
        ("monitoring/churn_feature_drift", names.CHECK_FEATURE_DRIFT),
        ("monitoring/purchase_feature_drift", names.CHECK_FEATURE_DRIFT),
    ]
    with instance_at(home) as instance:
        drift_check = dg.AssetCheckKey(
            dg.AssetKey(CHURN_CLASSIFIER.feature_drift_key), names.CHECK_FEATURE_DRIFT
        )
        evaluation = latest_evaluation(instance, drift_check)
        scores = latest_evaluation(
            instance,
            dg.AssetCheckKey(
                dg.AssetKey(CHURN_CLASSIFIER.prediction_drift_key), names.CHECK_PREDICTION_DRIFT
            ),
        )
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR and not evaluation.passed
    assert evaluation.metadata["share_drifted"].value >= 0.4
    started = dt.date.fromisoformat(evaluation.metadata["breach_started"].value)
    assert SHIFT < started <= SHIFT + dt.timedelta(days=16)  # the 7- and 30-day windows fill
    assert "sessions_7d" in materialized_drifted_columns(home)
    rows = build_resources(tiny_settings(home))["lakehouse"].read(FEATURE_DRIFT).toPandas()
    worth_opening = rows[rows.share_drifted >= 0.3]
    assert len(worth_opening) >= 5 and all(Path(p).is_file() for p in worth_opening.report_path)
    assert not scores.passed and scores.severity == dg.AssetCheckSeverity.WARN  # scores moved too


def materialized_drifted_columns(home: Path) -> str:
    rows = build_resources(tiny_settings(home))["lakehouse"].read(FEATURE_DRIFT).toPandas()
    return rows.sort_values("window_date").drifted_columns.iloc[-1]


def test_a_breach_asks_for_retraining_once(drifted):
    home, _, _ = drifted
    first = _retraining_sensor(home)
    [request] = first.run_requests
    started = first.cursor
    assert request.run_key == f"drift-breach-churn-{started}"
    assert request.tags["ml_assets/trigger"] == "drift"
    assert request.tags["ml_assets/model"] == CHURN_CLASSIFIER.name
    # only the drifting model's line is retrained, not every model's
    selected = {k.to_user_string() for k in request.asset_selection}
    assert "registry/churn_classifier_champion" in selected
    assert not any(k.startswith(("models/", "registry/")) and "churn" not in k for k in selected)
    again = _retraining_sensor(home, cursor=started)
    assert isinstance(again, dg.SkipReason) and "already triggered retraining" in (
        again.skip_message
    )
    job = build_definitions(tiny_settings(home)).resolve_job_def(names.RETRAINING_JOB)
    assert dg.AssetKey(CHURN_CLASSIFIER.champion_key) in job.asset_layer.selected_asset_keys


def test_prediction_drift_before_any_prediction_fails_naming_what_to_materialize(tmp_path):
    settings = tiny_settings(tmp_path / "home")
    key = dg.AssetKey(CHURN_CLASSIFIER.prediction_drift_key)
    asset = build_definitions(settings).get_assets_def(key)
    with instance_at(tmp_path / "home") as instance:
        result = dg.materialize(
            [asset], resources=build_resources(settings), instance=instance, raise_on_error=False
        )
    assert not result.success
    assert step_failure(result, key.path[-1]) == (
        f"{PREDICTIONS.name} does not exist: materialize serving/churn_predictions first."
    )
