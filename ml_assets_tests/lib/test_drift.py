"""Drift on explicit data: Evidently's report read into numbers, and the debounced status."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from ml_assets.lib.monitoring.drift import debounced_status, drift_report

RNG = np.random.default_rng(0)


def frame(n: int, shift: float = 0.0, premium: float = 0.2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "events_7d": RNG.poisson(10 + shift, n).astype(float),
            "revenue_30d": RNG.gamma(2.0, 20 * (1 + shift / 10), n),
            "plan_tier": RNG.choice(["free", "premium"], n, p=[1 - premium, premium]),
        }
    )


COLUMNS = ["events_7d", "revenue_30d", "plan_tier"]


def test_the_same_distribution_does_not_drift_and_a_shift_does():
    steady = drift_report(frame(3000), frame(2000), COLUMNS)
    assert steady.share_drifted == 0.0 and steady.drifted_columns == []
    assert set(steady.columns) == set(COLUMNS) and "<html" in steady.html.lower()
    shifted = drift_report(frame(3000), frame(2000, shift=8, premium=0.6), COLUMNS)
    assert shifted.drifted_columns == sorted(COLUMNS) and shifted.share_drifted == 1.0
    events = shifted.columns["events_7d"]
    assert events.drifted and events.score >= events.threshold  # a distance on this much data


@pytest.mark.parametrize(
    ("rows", "num_method"), [((400, 300), None), ((3000, 2000), None), ((400, 300), "wasserstein")]
)
def test_the_numbers_are_those_of_evidentlys_data_drift_preset(rows, num_method):
    """The fast path (DataDriftTable, no widgets) computes what the preset reports."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference, current = frame(rows[0]), frame(rows[1], shift=1.5, premium=0.3)
    fast = drift_report(reference, current, COLUMNS, num_method=num_method)
    snapshot = Report([DataDriftPreset(columns=COLUMNS, num_method=num_method)]).run(
        current_data=current[COLUMNS], reference_data=reference[COLUMNS]
    )
    preset = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("DriftedColumnsCount"):
            preset["share"] = float(metric["value"]["share"])
        elif config.get("type", "").endswith("ValueDrift"):
            preset[config["column"]] = (
                config["method"],
                float(metric["value"]),
                float(config["threshold"]),
            )
    assert fast.share_drifted == preset["share"]
    for column in COLUMNS:
        found = fast.columns[column]
        assert found.threshold == preset[column][2]
        # a fixed method is named by its id in the preset, by its display name here
        assert found.method == preset[column][0] or (
            num_method is not None and found.method.lower().startswith(num_method)
        )
        assert found.score == pytest.approx(preset[column][1], rel=1e-12, abs=1e-15)
    assert fast._html is None  # nothing rendered until the report is asked for
    assert "<html" in fast.html.lower()


def varied(n: int, shift: float, rng: np.random.Generator) -> pd.DataFrame:
    """Every kind of column a feature table gives the monitor: counts with few and many
    values, floats with missing values and infinities, booleans, strings, integer codes."""
    revenue = rng.gamma(2.0, 20 + shift, n)
    revenue[rng.random(n) < 0.1] = np.nan
    revenue[rng.random(n) < 0.01] = np.inf
    return pd.DataFrame(
        {
            "sessions_7d": rng.poisson(3 + shift, n).astype("int64"),
            "events_30d": rng.poisson(40 + 4 * shift, n).astype(float),
            "revenue_30d": revenue,
            "premium": rng.random(n) < 0.2 + shift / 20,
            "plan_tier": rng.choice(["free", "plus", "premium"], n),
            "device_code": rng.integers(0, 3 + int(shift), n),
            "days_since": rng.exponential(5 + shift, n),
        }
    )


@pytest.mark.parametrize("num_method", [None, "wasserstein", "psi"])
@pytest.mark.parametrize("rows", [(120, 80), (900, 700), (3000, 2000)])
@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_each_column_is_tested_as_evidentlys_data_drift_table_tests_it(rows, shift, num_method):
    """The per-column tests run without the table's widget data give the table's numbers."""
    import warnings

    from evidently.legacy.metrics import DataDriftTable
    from evidently.legacy.report import Report as LegacyReport

    rng = np.random.default_rng(rows[0] + int(shift))
    reference, current = varied(rows[0], 0.0, rng), varied(rows[1], shift, rng)
    columns = list(reference.columns)
    table = LegacyReport(metrics=[DataDriftTable(columns=columns, num_stattest=num_method)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        table.run(current_data=current, reference_data=reference)
    expected = table.as_dict()["metrics"][0]["result"]
    found = drift_report(reference, current, columns, num_method=num_method)
    assert found.share_drifted == float(expected["share_of_drifted_columns"])
    assert found.drifted_count == int(expected["number_of_drifted_columns"])
    for column, drift in expected["drift_by_columns"].items():
        assert (found.columns[column].method, found.columns[column].score) == (
            str(drift["stattest_name"]),
            float(drift["drift_score"]),
        ), column
        assert found.columns[column].threshold == float(drift["stattest_threshold"]), column
        assert found.columns[column].drifted is bool(drift["drift_detected"]), column
    if shift:
        assert found.drifted_count > 0


@pytest.mark.parametrize("num_method", [None, "psi"])
def test_the_report_is_the_html_of_evidentlys_data_drift_preset(num_method):
    """The kept report leaves out the per-column metrics the preset computes and does not
    show: the same page as the preset's, but for the ids Evidently draws for each render."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    rng = np.random.default_rng(7)
    reference, current = varied(900, 0.0, rng), varied(300, 1.0, rng)
    columns = list(reference.columns)
    ours = drift_report(reference, current, columns, num_method=num_method).html
    theirs = (
        Report([DataDriftPreset(columns=columns, num_method=num_method)])
        .run(current_data=current[columns], reference_data=reference[columns])
        .get_html_str(as_iframe=False)
    )
    ids = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")
    assert ids.sub("id", ours) == ids.sub("id", theirs)
    assert all(column in ours for column in columns) and "Drift" in ours


def test_small_windows_use_a_p_value_and_drift_when_it_is_small():
    shifted = drift_report(frame(400), frame(300, shift=8), ["events_7d"])
    column = shifted.columns["events_7d"]
    assert "p_value" in column.method and column.drifted and column.score < column.threshold


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"columns \['nope'\] in both"):
        drift_report(frame(10), frame(10), ["nope"])
    with pytest.raises(ValueError, match="reference has 0, current 10"):
        drift_report(frame(0), frame(10), COLUMNS)


def test_one_breach_warns_and_k_of_the_last_n_windows_are_an_error():
    kwargs = {"warn_at": 0.3, "error_at": 0.5, "k": 2, "n": 5}
    assert debounced_status([0.1, 0.2], **kwargs).level == "ok"
    assert debounced_status([0.1, 0.4], **kwargs).level == "warn"
    once = debounced_status([0.1, 0.1, 0.6], **kwargs)
    assert once.level == "warn" and once.breaches_in_window == 1  # one noisy window
    twice = debounced_status([0.6, 0.1, 0.1, 0.1, 0.7], **kwargs)
    assert twice.level == "error" and "2 of the last 5 windows" in twice.description
    outside = debounced_status([0.6, 0.1, 0.1, 0.1, 0.1, 0.7], **kwargs)
    assert outside.level == "warn"  # the first breach fell out of the last 5 windows
    recovered = debounced_status([0.6, 0.7, 0.1], **kwargs)
    assert recovered.level == "ok"  # an error needs the latest window breached
    with pytest.raises(ValueError, match="warn_at <= error_at"):
        debounced_status([0.1], warn_at=0.6, error_at=0.5)
