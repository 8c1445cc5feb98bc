"""The table maintenance job vacuums every table of the graph and reports it per table."""

from __future__ import annotations

import os
import shutil
import time

from ml_assets import names
from ml_assets.definitions import build_definitions
from ml_assets.lib.raw import EVENTS
from ml_assets_tests.defs.conftest import instance_at, tiny_settings

EIGHT_DAYS = 8 * 24 * 3600


def test_the_maintenance_job_removes_old_unreferenced_files_and_nothing_a_version_needs(
    home, resources
):
    lakehouse = resources["lakehouse"]
    table_dir = home / "warehouse" / "main" / "raw" / "events"
    rows, version = lakehouse.read(EVENTS).count(), lakehouse.version(EVENTS)
    referenced = next(table_dir.glob("event_date=*/*.parquet"))
    old = time.time() - EIGHT_DAYS
    orphans = {  # what killed writes leave: a complete file and a half-written one, 8 days old
        referenced.parent / "part-99999-killed.snappy.parquet": referenced,
        table_dir / "part-99998-killed.snappy.parquet#1": referenced,
    }
    young = referenced.parent / "part-99997-in-flight.snappy.parquet"  # a write in progress
    for path in [*orphans, young]:
        shutil.copy(referenced, path)
    for path in orphans:
        os.utime(path, (old, old))
    checkpoint = home / "warehouse" / "_checkpoints" / "left-by-a-killed-run"
    checkpoint.mkdir(parents=True)
    os.utime(checkpoint, (old, old))

    defs = build_definitions(tiny_settings(home))
    with instance_at(home) as instance:
        result = defs.resolve_job_def(names.TABLE_MAINTENANCE_JOB).execute_in_process(
            instance=instance
        )
        observed = {
            event.asset_key.to_user_string(): event.event_specific_data.asset_observation.metadata
            for event in result.all_events
            if event.event_type_value == "ASSET_OBSERVATION"
        }
    assert result.success
    events = observed["raw/events"]
    assert events["vacuum_files_deleted"].value == 2
    assert events["vacuum_bytes_freed"].value == 2 * referenced.stat().st_size
    assert not any(p.exists() for p in orphans) and young.exists() and referenced.exists()
    assert not checkpoint.exists()
    assert lakehouse.read(EVENTS).count() == rows and lakehouse.version(EVENTS) > version
    assert {"raw/users", "features/user_activity", "training_sets/churn_training_set"} <= set(
        observed
    )
    assert all(m["vacuum_retention_hours"].value == 168 for m in observed.values())


def test_a_short_retention_must_be_allowed_explicitly(home):
    defs = build_definitions(tiny_settings(home))
    job = defs.resolve_job_def(names.TABLE_MAINTENANCE_JOB)
    config = {"ops": {"vacuum_tables": {"config": {"retention_hours": 1}}}}
    with instance_at(home) as instance:
        result = job.execute_in_process(instance=instance, run_config=config, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "below Delta's default of 168 h" in failure.step_failure_data.error.cause.message
    schedule = defs.get_schedule_def("weekly_table_maintenance_schedule")
    assert schedule.cron_schedule == "0 4 * * 0"
