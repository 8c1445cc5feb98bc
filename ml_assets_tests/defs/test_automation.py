"""Schedules and sensors, evaluated with Dagster's build_*_context helpers."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from ml_assets import names
from ml_assets.definitions import build_definitions
from ml_assets.defs.automation import landed_partitions
from ml_assets.defs.registry.assets import AFTER_BLOCKING_CHECKS
from ml_assets.lib.models.churn_classifier import CHURN_CLASSIFIER
from ml_assets.lib.source import SCALES
from ml_assets.resources.landing import LandingZone
from ml_assets_tests.churn import churn_classifier_version
from ml_assets_tests.defs.conftest import instance_at, tiny_settings

TINY_FIRST_DAY = dt.date(2026, 1, 1)


def land(root, *days: dt.date) -> None:
    for day in days:
        folder = root / "events" / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "events.jsonl").write_text("{}\n")


def test_each_landed_day_asks_for_itself_and_its_late_window_once():
    keys = {(TINY_FIRST_DAY + dt.timedelta(days=n)).isoformat() for n in range(70)}
    days = [TINY_FIRST_DAY + dt.timedelta(days=n) for n in range(5)]
    requests, cursor = landed_partitions(days[:2], None, 3, keys)
    assert requests == [
        (days[0], "2026-01-01", "2026-01-01"),  # nothing before the calendar's first day
        (days[1], "2026-01-01", "2026-01-02"),
    ]
    assert cursor == "2026-01-02"
    requests, cursor = landed_partitions(days, cursor, 3, keys)
    assert [(r[1], r[2]) for r in requests] == [
        ("2026-01-01", "2026-01-03"),
        ("2026-01-01", "2026-01-04"),
        ("2026-01-02", "2026-01-05"),
    ]
    assert landed_partitions(days, cursor, 3, keys) == ([], "2026-01-05")  # nothing new


def test_the_landing_sensor_requests_one_run_per_new_day_and_never_twice(tmp_path):
    defs = build_definitions(tiny_settings(tmp_path))
    sensor = defs.get_sensor_def("landed_events_sensor")
    landing = LandingZone(root=str(tmp_path / "landing"), spark=defs.resources["spark"])
    land(tmp_path / "landing", TINY_FIRST_DAY, TINY_FIRST_DAY + dt.timedelta(days=1))
    with dg.build_sensor_context(resources={"landing": landing}) as context:
        first = sensor(context)
    assert [r.run_key for r in first.run_requests] == ["landed-2026-01-01", "landed-2026-01-02"]
    assert first.run_requests[1].tags["dagster/asset_partition_range_end"] == "2026-01-02"
    assert first.run_requests[0].asset_selection == [dg.AssetKey(names.RAW_EVENTS_KEY)]
    with dg.build_sensor_context(cursor=first.cursor, resources={"landing": landing}) as context:
        assert sensor(context).run_requests == []  # the same days: no duplicate runs
    land(tmp_path / "landing", TINY_FIRST_DAY + dt.timedelta(days=2))
    with dg.build_sensor_context(cursor=first.cursor, resources={"landing": landing}) as context:
        third = sensor(context)
    assert [r.run_key for r in third.run_requests] == ["landed-2026-01-03"]
    assert third.cursor == "2026-01-03"


def test_the_daily_schedule_runs_yesterdays_partition_and_the_weekly_one_retrains(tmp_path):
    defs = build_definitions(tiny_settings(tmp_path))
    daily = defs.get_schedule_def("daily_features_schedule")
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 1, 10, 1, tzinfo=dt.UTC)
    )
    (request,) = daily.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-01-09"
    assert daily.cron_schedule == "0 1 * * *" and daily.job_name == names.DAILY_FEATURES_JOB
    weekly = defs.get_schedule_def("weekly_retraining_schedule")
    assert weekly.cron_schedule == "0 3 * * 1" and weekly.job_name == names.RETRAINING_JOB
    assert len(weekly.evaluate_tick(dg.build_schedule_context()).run_requests) == 1
    retraining = defs.resolve_job_def(names.RETRAINING_JOB)
    assert (
        dg.AssetKey(CHURN_CLASSIFIER.champion_key) in retraining.asset_layer.executable_asset_keys
    )
    # model quality daily, and the opt-in autopilot: the same job, acting on the verdicts
    quality = defs.get_schedule_def("model_quality_schedule")
    assert quality.job_name == names.MODEL_QUALITY_JOB and quality.cron_schedule == "0 2 * * *"
    autopilot = defs.get_schedule_def("canary_autopilot_schedule")
    assert autopilot.job_name == names.MODEL_QUALITY_JOB
    (request,) = autopilot.evaluate_tick(dg.build_schedule_context()).run_requests
    assert request.run_config["ops"] == {
        "monitoring__churn_canary_verdict": {"config": {"act": True}},
        "monitoring__purchase_canary_verdict": {"config": {"act": True}},
    }
    assert quality.evaluate_tick(dg.build_schedule_context()).run_requests[0].run_config == {}


def test_the_endpoint_sensor_fires_when_an_alias_moves_and_only_then(home, resources):
    defs = build_definitions(tiny_settings(home))
    sensor = defs.get_sensor_def("churn_endpoint_config_sensor")
    with dg.build_sensor_context(resources={"model_registry": resources["model_registry"]}) as c:
        first = sensor(c)
    (request,) = first.run_requests
    assert request.run_key == first.cursor == "champion=1,challenger=None"
    with dg.build_sensor_context(
        cursor=first.cursor, resources={"model_registry": resources["model_registry"]}
    ) as c:
        unchanged = sensor(c)
    assert isinstance(unchanged, dg.SkipReason)
    with instance_at(home) as instance:  # a new version: the challenger alias moves
        dg.materialize([churn_classifier_version], resources=resources, instance=instance)
    with dg.build_sensor_context(
        cursor=first.cursor, resources={"model_registry": resources["model_registry"]}
    ) as c:
        moved = sensor(c)
    assert [r.run_key for r in moved.run_requests] == ["champion=1,challenger=2"]


def test_a_new_raw_events_partition_requests_its_daily_features_declaratively(tmp_path):
    defs = build_definitions(tiny_settings(tmp_path))
    daily = dg.AssetKey(names.USER_DAILY_ACTIVITY_KEY)
    last = SCALES["tiny"].end_date.isoformat()
    with dg.DagsterInstance.ephemeral() as instance:
        first = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=dg.AssetSelection.assets(daily)
        )
        assert first.get_num_requested(daily) == 0  # raw/events is missing: nothing to follow
        instance.report_runless_asset_event(
            dg.AssetMaterialization(dg.AssetKey(names.RAW_EVENTS_KEY), partition=last)
        )
        second = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            asset_selection=dg.AssetSelection.assets(daily),
            cursor=first.cursor,
        )
    assert second.get_requested_partitions(daily) == {last}


def _gated_graph(passes: dict[str, bool]) -> dg.Definitions:
    @dg.asset(
        check_specs=[dg.AssetCheckSpec("metrics_meet_thresholds", asset="model", blocking=True)]
    )
    def model():
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(passed=passes["model"])

    @dg.asset(deps=[model], automation_condition=AFTER_BLOCKING_CHECKS)
    def version() -> None:
        pass

    return dg.Definitions(assets=[model, version])


def test_the_registry_condition_waits_for_the_models_blocking_checks():
    passes = {"model": False}
    defs = _gated_graph(passes)
    version = dg.AssetKey("version")
    with dg.DagsterInstance.ephemeral() as instance:
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        dg.materialize([defs.get_assets_def("model")], instance=instance, raise_on_error=False)
        refused = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert refused.get_num_requested(version) == 0  # updated, but its blocking check failed
        passes["model"] = True
        dg.materialize([defs.get_assets_def("model")], instance=instance)
        passed = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=refused.cursor
        )
    assert passed.get_num_requested(version) == 1
