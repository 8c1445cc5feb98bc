"""The raw stage materialized in-process on the tiny scale, and every check failing on bad data."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from pyspark.sql import functions as F

from ml_assets.defs.partitions import daily_partitions
from ml_assets.defs.raw.assets import build_raw_events, raw_users
from ml_assets.deployments import build_resources
from ml_assets.lib.features import user_activity, user_daily_activity, user_profile
from ml_assets.lib.landing import BOM, unescape_bytes
from ml_assets.lib.raw import EVENTS, EVENTS_QUARANTINE, USERS, USERS_QUARANTINE
from ml_assets.lib.source import SCALES
from ml_assets.lib.training_sets.churn import LABELS, TRAINING_SET
from ml_assets.programs.reporting import partition_metadata, run_check_results
from ml_assets.resources.lakehouse import LocalDeltaLakehouse
from ml_assets.resources.landing import LandingZone
from ml_assets_tests.defs.conftest import evaluate_checks, materialization_metadata, tiny_settings


def test_the_tiny_graph_ingests_with_every_check_passing_and_counts_in_metadata(ingested):
    _, result = ingested
    checks = [c for c in run_check_results(result) if c.asset_key.path[0] == "raw"]
    assert len(checks) == 16  # no_backdated_changes included
    assert [(c.asset_key.to_user_string(), c.check_name) for c in checks if not c.passed] == []
    events = materialization_metadata(result, "raw/events")
    days = partition_metadata(result, "raw/events")
    assert (
        len(days) == SCALES["tiny"].days
    )  # one materialization per day of the single-run backfill
    total = {
        k: sum(d[k] for d in days.values())
        for k in ("lines_landed", "rows_kept", "rows_quarantined", "duplicates_removed")
    }
    assert total["lines_landed"] == (
        total["rows_kept"] + total["rows_quarantined"] + total["duplicates_removed"]
    )
    assert events["dagster/row_count"] == total["rows_kept"] > 10_000
    assert total["rows_quarantined"] > 0 and total["duplicates_removed"] > 0
    assert events["delta_version"] == "1"  # text: a version number is not a quantity to plot
    assert events["ingestion_batches"] == 1 and events["delta_commits_in_run"] == 1
    steps = events["seconds_by_step"]  # where the ingestion's time went
    assert list(steps) == ["parse_and_judge", "rank_and_count", "write_events", "write_quarantine"]
    assert all(s > 0 for s in steps.values()) and sum(steps.values()) <= events["seconds"] + 0.05
    assert events["partition_range"] == "2025-10-01..2026-03-11"
    assert set(events["quarantined_by_reason"]) >= {"malformed_json", "unknown_user_id"}
    for day, metadata in days.items():  # each day's own figures, not the run's
        assert metadata["rows_kept"] == metadata["dagster/partition_row_count"], day
        assert metadata["first_event_ts"].startswith(day), day
    assert len({d["dagster/partition_row_count"] for d in days.values()}) > 30
    reasons = {r for d in days.values() for r in d["quarantined_by_reason"]}
    assert reasons >= {"malformed_json", "null_user_id", "unknown_user_id", "future_timestamp"}
    quarantine = partition_metadata(result, "raw/events_quarantine")
    assert (
        sum(d["dagster/partition_row_count"] for d in quarantine.values())
        == total["rows_quarantined"]
    )
    assert (
        materialization_metadata(result, "raw/events_quarantine")["rows_in_range"]
        == total["rows_quarantined"]
    )
    users = materialization_metadata(result, "raw/users")
    assert users["users"] > 350 and users["rows_kept"] == users["dagster/row_count"]


def _materialize_day(home, day: str, lakehouse=None) -> dg.ExecuteInProcessResult:
    resources = build_resources(tiny_settings(home))
    if lakehouse is not None:
        resources["lakehouse"] = lakehouse
    events = build_raw_events(daily_partitions(SCALES["tiny"].start_date, SCALES["tiny"].end_date))
    return dg.materialize(
        [events],
        partition_key=day,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _snapshot(lakehouse, spec, column, day):
    rows = lakehouse.read(spec).where(F.col(column) == F.lit(dt.date.fromisoformat(day)))
    return sorted(tuple(r) for r in rows.collect())


def test_rematerializing_a_partition_is_idempotent(home, resources):
    lakehouse = resources["lakehouse"]
    day = "2026-01-08"
    before = (
        _snapshot(lakehouse, EVENTS, "event_date", day),
        _snapshot(lakehouse, EVENTS_QUARANTINE, "partition_date", day),
    )
    total_before = lakehouse.read(EVENTS).count()
    for expected_version in (2, 3):
        result = _materialize_day(home, day)
        assert result.success
        assert lakehouse.version(EVENTS) == expected_version
        after = (
            _snapshot(lakehouse, EVENTS, "event_date", day),
            _snapshot(lakehouse, EVENTS_QUARANTINE, "partition_date", day),
        )
        assert after == before
        assert lakehouse.read(EVENTS).count() == total_before
    assert len(before[0]) > 100 and len(before[1]) > 0


def test_a_range_ingested_in_batches_holds_what_one_read_of_it_holds(home, resources):
    """Each day its own batch (a budget of one byte): the tables equal those the tiny graph's
    single read wrote, duplicates re-sent the next day and late lines included."""
    lakehouse = resources["lakehouse"]

    def tables():
        return [
            sorted(tuple(r) for r in lakehouse.read(s).collect())
            for s in (EVENTS, EVENTS_QUARANTINE)
        ]

    before = tables()
    landing = LandingZone(
        root=resources["landing"].root, spark=resources["spark"], max_bytes_per_batch=1
    )
    events = build_raw_events(daily_partitions(SCALES["tiny"].start_date, SCALES["tiny"].end_date))
    result = dg.materialize(
        [events],
        resources={**resources, "landing": landing},
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": "2026-01-01",
            "dagster/asset_partition_range_end": "2026-01-20",
        },
    )
    assert tables() == before
    assert len(before[0]) > 10_000 and len(before[1]) > 0
    (check,) = run_check_results(result)
    assert check.check_name == "rows_conserved" and check.passed
    metadata = materialization_metadata(result, "raw/events")
    assert metadata["ingestion_batches"] == metadata["delta_commits_in_run"] == 20
    assert metadata["landed_files_read"] == 23  # its 20 days and 3 late days, each read once
    assert metadata["delta_version"] == str(1 + 20)
    days = partition_metadata(result, "raw/events")  # each day its own batch's figures
    assert len(days) == 20
    total = {
        k: sum(d[k] for d in days.values())
        for k in ("lines_landed", "rows_kept", "rows_quarantined", "duplicates_removed")
    }
    assert total["lines_landed"] == (
        total["rows_kept"] + total["rows_quarantined"] + total["duplicates_removed"]
    )
    assert total["duplicates_removed"] > 0 and total["rows_quarantined"] > 0
    assert total["rows_kept"] == metadata["rows_in_range"]


class LossyLakehouse(LocalDeltaLakehouse):
    """A lakehouse whose range writes lose rows: what row conservation is there to catch."""

    def replace_range(self, spec, df, **kwargs):
        return super().replace_range(
            spec, df.where(~F.col(spec.column_names[0]).endswith("7")), **kwargs
        )


class LossyOverwriteLakehouse(LocalDeltaLakehouse):
    def overwrite(self, spec, df):
        return super().overwrite(spec, df.where(F.col("user_id") % 50 != 7))


def test_users_rows_conserved_fails_when_a_write_loses_rows(home, resources):
    lossy = LossyOverwriteLakehouse(
        warehouse_dir=resources["lakehouse"].warehouse_dir, spark=resources["spark"]
    )
    result = dg.materialize(
        [raw_users],
        resources={**resources, "lakehouse": lossy},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    (check,) = [c for c in run_check_results(result) if c.check_name == "rows_conserved"]
    assert not check.passed and check.metadata["lines_unaccounted"].value > 0


def test_rows_conserved_fails_when_a_write_loses_rows(home, resources):
    lossy = LossyLakehouse(
        warehouse_dir=resources["lakehouse"].warehouse_dir, spark=resources["spark"]
    )
    result = _materialize_day(home, "2026-01-08", lakehouse=lossy)
    (check,) = [c for c in run_check_results(result) if c.check_name == "rows_conserved"]
    assert not check.passed
    assert check.metadata["lines_unaccounted"].value > 0
    assert "lines lost" in check.description


def test_event_checks_fail_on_duplicates_and_invalid_values(home, resources):
    lakehouse = resources["lakehouse"]
    sample = lakehouse.read(EVENTS).where("event_type = 'login'").limit(3)
    lakehouse.append(EVENTS, sample)  # the same event_ids again
    bad = sample.limit(1).select(
        *[
            F.lit("evt_bad").alias(c)
            if c == "event_id"
            else F.lit(-5.0).alias(c)
            if c == "revenue"
            else F.col(c)
            for c in EVENTS.column_names
        ]
    )
    lakehouse.append(EVENTS, bad)
    checks = evaluate_checks(home, "raw/events")
    assert not checks["key_unique"].passed
    assert checks["key_unique"].metadata["duplicate_keys"].value == 3
    assert not checks["values_valid"].passed
    observed = {k: v.value for k, v in checks["values_valid"].metadata.items()}
    assert observed["violations_revenue_non_negative"] == 1
    assert observed["violations_revenue_only_on_purchases"] == 1
    assert checks["keys_not_null"].passed and checks["schema_matches_contract"].passed


def _overwrite_outside_the_lakehouse(lakehouse, spec, table: pa.Table):
    """What another tool writing the same files could do: no contract enforced."""
    write_deltalake(
        lakehouse.uri(spec).removeprefix("file://"),
        table,
        mode="overwrite",
        schema_mode="overwrite",
    )


@pytest.mark.parametrize(
    ("asset", "spec", "null_column"),
    [
        ("raw/events", EVENTS, "user_id"),
        ("raw/users", USERS, "valid_from"),
        # the same contract checks, declared from the feature contracts and training-set specs
        ("features/user_daily_activity", user_daily_activity.CONTRACT.table_spec, "user_id"),
        ("features/user_activity", user_activity.CONTRACT.table_spec, "feature_ts"),
        ("features/user_profile", user_profile.CONTRACT.table_spec, "user_id"),
        ("training_sets/churn_labels", LABELS, "label_ts"),
        ("training_sets/churn_training_set", TRAINING_SET, "user_id"),
    ],
)
def test_null_keys_and_a_drifted_schema_fail_their_checks(
    home, resources, asset, spec, null_column
):
    lakehouse = resources["lakehouse"]
    rows = lakehouse.read(spec).limit(5).toArrow()
    nullable = pa.schema([f.with_nullable(True) for f in rows.schema])
    i = rows.schema.get_field_index(null_column)
    values = pa.array([None] + rows[null_column].to_pylist()[1:], rows.schema.field(i).type)
    broken = rows.cast(nullable).set_column(i, nullable.field(i), values)
    _overwrite_outside_the_lakehouse(lakehouse, spec, broken)
    checks = evaluate_checks(home, asset)
    assert not checks["keys_not_null"].passed
    assert checks["keys_not_null"].metadata[f"nulls_{null_column}"].value == 1
    assert not checks["schema_matches_contract"].passed
    assert "not null, found" in checks["schema_matches_contract"].description


@pytest.mark.parametrize(
    ("asset", "spec"),
    [("raw/events_quarantine", EVENTS_QUARANTINE), ("raw/users_quarantine", USERS_QUARANTINE)],
)
def test_a_quarantine_table_with_an_unexpected_column_fails_its_schema_check(
    home, resources, asset, spec
):
    lakehouse = resources["lakehouse"]
    rows = lakehouse.read(spec).toArrow()
    rows = rows.append_column("note", pa.array(["x"] * rows.num_rows))
    _overwrite_outside_the_lakehouse(lakehouse, spec, rows)
    checks = evaluate_checks(home, asset)
    assert not checks["schema_matches_contract"].passed
    assert "'note'" in checks["schema_matches_contract"].description


def test_user_checks_fail_on_a_second_current_version_a_duplicate_and_an_unknown_tier(
    home, resources
):
    lakehouse = resources["lakehouse"]
    users = lakehouse.read(USERS)
    current = users.where("is_current").orderBy("user_id").limit(1)
    lakehouse.append(
        USERS, current.withColumn("valid_from", F.col("valid_from") - F.expr("INTERVAL 1 SECOND"))
    )
    lakehouse.append(USERS, users.orderBy("user_id", "valid_from").limit(1))
    lakehouse.append(
        USERS,
        users.orderBy("user_id")
        .limit(1)
        .select(
            *[
                F.lit("gold").alias(c)
                if c == "plan_tier"
                else (F.col(c) + F.expr("INTERVAL 1 DAY")).alias(c)
                if c == "valid_from"
                else F.col(c)
                for c in USERS.column_names
            ]
        ),
    )
    checks = evaluate_checks(home, "raw/users")
    assert not checks["one_current_version_per_user"].passed
    assert not checks["key_unique"].passed
    assert checks["key_unique"].metadata["duplicate_keys"].value == 1
    assert not checks["values_valid"].passed
    assert checks["values_valid"].metadata["violations_plan_tier_known"].value == 1


def test_freshness_warns_when_landed_data_has_not_been_ingested(home, resources):
    lakehouse = resources["lakehouse"]
    nothing = resources["spark"].get_session().createDataFrame([], EVENTS.spark_schema)
    last = SCALES["tiny"].end_date  # the last week un-ingested
    lakehouse.replace_range(
        EVENTS, nothing, column="event_date", start=last - dt.timedelta(days=6), end=last
    )
    newest = sorted((home / "landing/users").glob("date=*/changes.jsonl"))[-1]
    later = time.time() + 3600
    os.utime(newest, (later, later))  # a change-log file landed after the last ingestion
    events = evaluate_checks(home, "raw/events")["fresh"]
    users = evaluate_checks(home, "raw/users")["fresh"]
    for check in (events, users):
        assert not check.passed
        assert check.severity == dg.AssetCheckSeverity.WARN
    assert events.metadata["lag_hours"].value > 24 * 6


def test_a_user_without_a_current_version_fails_the_scd_check(home, resources):
    lakehouse = resources["lakehouse"]
    users = lakehouse.read(USERS)
    first = users.select(F.min("user_id")).first()[0]
    closed = F.col("is_current") & (F.col("user_id") == first)
    lakehouse.overwrite(
        USERS,
        users.withColumn("is_current", F.when(closed, F.lit(False)).otherwise(F.col("is_current"))),
    )
    check = evaluate_checks(home, "raw/users")["one_current_version_per_user"]
    assert not check.passed
    assert check.metadata["users_without_current_version"].value == 1


def _an_event(landing_day_dir, event_id: str) -> bytes:
    """A valid event of the landing day (so it belongs to that day's partition), new id."""
    line = next(iter((landing_day_dir / "events.jsonl").open("rb")))
    record = json.loads(line)
    record["event_id"] = event_id
    record["event_ts"] = landing_day_dir.name.removeprefix("date=") + "T12:00:00.000Z"
    return json.dumps(record).encode()


def test_hostile_landing_files_are_quarantined_or_ignored_and_the_run_succeeds(home, resources):
    events_dir = home / "landing" / "events"
    day_dir = events_dir / "date=2026-01-08"
    bad_bytes = _an_event(day_dir, "evt_latin1").replace(b'"evt_latin1"', b'"evt_caf\xe9"')
    with (day_dir / "events.jsonl").open("ab") as f:
        f.write(bad_bytes + b"\n")
    (day_dir / "bom.jsonl").write_bytes(BOM + _an_event(day_dir, "evt_after_bom") + b"\n")
    random_lines = os.urandom(2048).replace(b"\n", b"").replace(b"\r", b"") + b"\n"
    (day_dir / "random.jsonl").write_bytes(random_lines)
    stray = {
        "notes.txt": "evt_stray_txt",
        "events.jsonl.part": "evt_stray_part",
        ".hidden.jsonl": "evt_stray_hidden",
        "_tmp.jsonl": "evt_stray_marker",
    }
    for name, event_id in stray.items():
        (day_dir / name).write_bytes(_an_event(day_dir, event_id) + b"\n")
    (events_dir / "date=not-a-date").mkdir()
    (events_dir / "date=not-a-date" / "events.jsonl").write_bytes(
        _an_event(day_dir, "evt_bad_folder") + b"\n"
    )

    result = _materialize_day(home, "2026-01-08")

    assert result.success
    (conserved,) = [c for c in run_check_results(result) if c.check_name == "rows_conserved"]
    assert conserved.passed, conserved.description
    meta = materialization_metadata(result, "raw/events")
    assert meta["quarantined_by_reason"]["invalid_encoding"] == 2  # the latin-1 and random lines
    assert meta["files_not_clean_utf8"] == [
        "date=2026-01-08/bom.jsonl",
        "date=2026-01-08/events.jsonl",
        "date=2026-01-08/random.jsonl",
    ]
    assert set(meta["ignored_in_landing"]) >= {
        "date=2026-01-08/notes.txt (not a .jsonl file)",
        "date=2026-01-08/events.jsonl.part (upload in progress (.part or .tmp))",
        "date=not-a-date (folder name is not date=YYYY-MM-DD with a real date)",
    }
    lakehouse = resources["lakehouse"]
    ids = {r.event_id for r in lakehouse.read(EVENTS).select("event_id").collect()}
    assert "evt_after_bom" in ids  # the BOM is stripped, the event kept
    assert ids.isdisjoint(set(stray.values()) | {"evt_bad_folder"})
    (latin1,) = (
        lakehouse.read(EVENTS_QUARANTINE)
        .where(F.col("line").contains("evt_caf\\xe9"))  # escaped; evt_caf... is a real hex id
        .select("reason", "line")
        .collect()
    )
    assert latin1.reason == "invalid_encoding" and unescape_bytes(latin1.line) == bad_bytes

    # the sensor and the freshness checks read the same listing: nothing fails on the folder
    listing = resources["landing"].listing("events")
    assert dt.date(2026, 1, 8) in listing.dates
    checks = evaluate_checks(home, "raw/events")
    assert checks["fresh"].passed, checks["fresh"].description


def test_a_requested_day_missing_from_the_landing_zone_fails_every_requested_day_landed(
    ingested, home
):
    _, result = ingested
    (passed,) = [
        c for c in run_check_results(result) if c.check_name == "every_requested_day_landed"
    ]
    assert passed.passed, passed.description
    assert (
        passed.description
        == "All 162 requested days (2025-10-01..2026-03-11) landed for events, users"
    )
    shutil.rmtree(home / "landing" / "events" / "date=2026-02-03")
    (home / "landing" / "users" / "date=2026-03-11" / "changes.jsonl").unlink()
    failed = evaluate_checks(home, "landing/demo_source")["every_requested_day_landed"]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.description == (
        "Days requested but not landed: events: 1 day(s), e.g. 2026-02-03; "
        "users: 1 day(s), e.g. 2026-03-11"
    )
