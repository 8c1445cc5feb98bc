"""`make check` (python -m ml_assets.programs.check): a failed blocking check makes it exit
non-zero, and the JUnit XML names the failure. (CI runs the passing case: `.ci/run` ends with
it.)"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ml_assets import names
from ml_assets.programs import check

# A whole `make check` run with a failing check (about a minute): handed to a worker first.
pytestmark = pytest.mark.whole_graph


def test_a_failed_blocking_check_makes_the_check_command_exit_non_zero(tmp_path, capsys):
    config = tmp_path / "strict.json"
    strict = {
        "ops": {"models__churn_classifier": {"config": {"n_trials": 2, "min_test_roc_auc": 0.999}}}
    }
    config.write_text(json.dumps(strict))
    junit = tmp_path / "checks.xml"
    lane = tmp_path / "lane.json"
    status = check.main(
        ["--home", str(tmp_path / "home"), "--junit", str(junit), "--config", str(config)]
        + ["--fingerprint", str(lane)]
    )
    assert status == 1
    printed = capsys.readouterr().out
    assert "models/churn_classifier" in printed and "metrics_meet_thresholds" in printed
    assert "1 failed (ERROR)" in printed
    suite = ET.parse(junit).getroot()
    failures = {
        (case.get("classname"), case.get("name")): case.find("failure").get("message")
        for case in suite.iter("testcase")
        if case.find("failure") is not None
    }
    assert list(failures) == [("models/churn_classifier", "metrics_meet_thresholds")]
    assert "threshold >= 0.9990" in failures[("models/churn_classifier", "metrics_meet_thresholds")]
    assert suite.get("failures") == "1" and int(suite.get("tests")) > 40
    # the report and the JUnit properties name the engine; the lane's fingerprint is written
    assert "engine=sail" in printed and suite.get("name") == "asset_checks[sail]"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["engine"] == "sail" and properties["spark_remote"] == "embedded"
    fingerprint = json.loads(lane.read_text())
    assert fingerprint["engine"] == "sail"
    assert fingerprint["checks"]["models/churn_classifier:metrics_meet_thresholds"] == {
        "passed": False,
        "severity": "ERROR",
    }
    assert fingerprint["tables"][str(names.CHURN_TRAINING_SET_TABLE)]["rows"] > 0


def test_injected_leakage_stops_the_graph_at_the_raw_users_check(tmp_path, capsys):
    junit = tmp_path / "checks.xml"
    status = check.main(
        ["--inject", "leakage", "--home", str(tmp_path / "home"), "--junit", str(junit)]
        + ["--fingerprint", str(tmp_path / "lane.json")]
    )
    assert status == 1
    printed = capsys.readouterr().out
    assert "injected=leakage" in printed and "no_backdated_changes" in printed
    suite = ET.parse(junit).getroot()
    failures = [
        (case.get("classname"), case.get("name"), case.find("failure").text)
        for case in suite.iter("testcase")
        if case.find("failure") is not None
    ]
    assert [f[:2] for f in failures] == [("raw/users", "no_backdated_changes")]
    assert "by_change_type={'plan_change':" in failures[0][2]
    # blocking: nothing downstream was built on the leaky history
    names = {case.get("name") for case in suite.iter("testcase")}
    assert "metrics_meet_thresholds" not in names and "no_future_feature_values" not in names


def test_a_run_made_bad_on_purpose_writes_no_lane_fingerprint_unless_told_where():
    """``make lanes-compare`` compares every ``test-results/lane-*.json``: a drifted run
    writing the lane's file would stand in for the lane's clean run."""
    assert check.lane_file(None, [], "sail") == Path("test-results/lane-sail.json")
    assert check.lane_file(None, ["drift"], "sail") is None
    assert check.lane_file("x/lane.json", ["drift"], "spark") == Path("x/lane.json")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot be read"),
        ("ops: {models__churn_classifier: [", "not YAML or JSON"),
        ("- ops", "expected run config as a mapping"),
        (b"ops: \xff", "cannot be read"),
    ],
)
def test_a_config_file_that_is_not_run_config_is_a_usage_error_before_anything_runs(
    tmp_path, capsys, content, says
):
    config = tmp_path / "run.yaml"
    if isinstance(content, bytes):
        config.write_bytes(content)
    elif content is not None:
        config.write_text(content)
    home = tmp_path / "home"
    with pytest.raises(SystemExit) as exited:
        check.main(["--home", str(home), "--config", str(config)])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"--config {config}: {says}" in error, error
    assert not home.exists()  # nothing ran
