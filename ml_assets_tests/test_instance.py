"""The local instance's storage (ml_assets/programs/instance.py): Dagster's SQLite files and
behaviour, the index connection kept open."""

import queue
import subprocess
import sys
import threading

import dagster as dg
import pytest

from ml_assets.deployments import REPO_ROOT
from ml_assets.programs import instance as instance_module
from ml_assets.programs.instance import (
    RUN_ENGINES_KEPT,
    KeptIndexSqliteEventLogStorage,
    KeptIndexSqliteStorage,
    local_instance,
)

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-11")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def daily(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    # a data version: each partition's materialization carries a tag the index stores
    return dg.MaterializeResult(
        metadata={"days": len(context.partition_keys)}, data_version=dg.DataVersion("v1")
    )


@dg.asset_check(asset=daily)
def daily_has_days() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True, metadata={"observed": 1})


def materialize_range(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    keys = DAYS.get_partition_keys()
    return dg.materialize(
        [daily, daily_has_days],
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )


def stored(instance: dg.DagsterInstance, run_id: str) -> dict:
    """What the UI shows of a run: its events (in any order), the asset's partitions and the
    tags indexed for them, the asset's latest materialization and its check."""
    storage = instance.event_log_storage
    check = storage.get_latest_asset_check_execution_by_key([daily_has_days.check_key])[
        daily_has_days.check_key
    ]
    records = [
        r
        for r in instance.fetch_materializations(daily.key, limit=100).records
        if r.run_id == run_id
    ]
    latest = instance.get_latest_materialization_event(daily.key)
    return {
        "events": sorted(
            (e.dagster_event_type, e.dagster_event.partition if e.dagster_event else "")
            for e in instance.all_logs(run_id)
            if e.is_dagster_event
        ),
        "materialized": sorted(r.partition_key for r in records),
        "tags": [
            storage.get_event_tags_for_asset(daily.key, filter_event_id=r.storage_id)
            for r in sorted(records, key=lambda r: r.partition_key)
        ],
        "latest": (latest.run_id == run_id, latest.dagster_event.partition),
        "check": (check.run_id == run_id, check.status.value),
    }


def test_the_deployed_config_selects_it_with_dagsters_file_layout(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "deploy" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, KeptIndexSqliteEventLogStorage)
        run_id = materialize_range(instance).run_id
        # a child process (a run launched from the UI) is given the same storage
        storage = instance.get_ref().storage_data
        assert (storage.module_name, storage.class_name) == (
            "ml_assets.programs.instance",
            KeptIndexSqliteStorage.__name__,
        )
    assert (home / "history" / "runs.db").is_file()
    assert (home / "history" / "runs" / "index.db").is_file()
    assert (home / "history" / "runs" / f"{run_id}.db").is_file()


@pytest.mark.parametrize("batch_size", ["0", "1000"])
def test_what_it_writes_dagsters_own_storage_reads_and_the_other_way_round(
    tmp_path, monkeypatch, batch_size
):
    """One by one, or in Dagster's batches (``DAGSTER_EVENT_BATCH_SIZE``, as ``make`` sets it):
    the same rows as Dagster's storage writes, read alike by both."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch_size)
    batches: list[int] = []
    store_event_batch = KeptIndexSqliteEventLogStorage.store_event_batch

    def counted(storage, events) -> None:
        batches.append(len(events))
        store_event_batch(storage, events)

    monkeypatch.setattr(KeptIndexSqliteEventLogStorage, "store_event_batch", counted)
    monkeypatch.setattr(instance_module, "ROWS_PER_INSERT", 3)  # a batch in several INSERTs
    home = tmp_path / "dagster_home"
    with local_instance(home) as ours:
        first = materialize_range(ours).run_id
        ours_sees = stored(ours, first)
    with dg.DagsterInstance.local_temp(str(home)) as dagsters:
        assert type(dagsters.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert stored(dagsters, first) == ours_sees
        second = materialize_range(dagsters).run_id
        dagsters_sees = stored(dagsters, second)
    with local_instance(home) as ours:
        assert stored(ours, second) == dagsters_sees
        # the first run's rows unchanged; the latest materialization and check are the second's
        no_longer_latest = {"latest": (False, "2026-01-10"), "check": (False, "SUCCEEDED")}
        assert stored(ours, first) == {**ours_sees, **no_longer_latest}
    assert ours_sees == dagsters_sees  # what either wrote for the same run
    days = DAYS.get_partition_keys()
    assert ours_sees["materialized"] == days
    assert ours_sees["tags"] == [[{"dagster/data_version": "v1"}]] * len(days)
    assert ours_sees["latest"] == (True, "2026-01-10") and ours_sees["check"] == (True, "SUCCEEDED")
    planned = [p for t, p in ours_sees["events"] if t == "ASSET_MATERIALIZATION_PLANNED"]
    assert planned == days
    # the run's planned events and the range's materializations came as two batches
    assert sorted(batches) == ([] if batch_size == "0" else [len(days), len(days) + 1])


def test_a_watcher_sees_a_running_runs_events_before_it_ends(tmp_path):
    """The UI follows a running run by watching its database file change; a connection kept
    open on it would hold the writes in its WAL file until the run ended."""
    home = tmp_path / "dagster_home"
    run_ids: queue.Queue[str] = queue.Queue()
    watching, seen = threading.Event(), threading.Event()

    @dg.asset
    def slow(context: dg.AssetExecutionContext) -> None:
        run_ids.put(context.run_id)
        assert watching.wait(30), "the test never started watching"
        context.log.info("halfway")
        # a running step goes on writing (each write touches the run's database again, as a
        # real step's logs do), so a change the watcher missed is caught up by the next one
        for _ in range(60):
            if seen.wait(1):
                return
            context.log.info("still running")
        raise AssertionError("the watcher did not see the running step's log within 60 s")

    def on_event(entry, _cursor) -> None:
        if entry.user_message == "halfway":
            seen.set()

    with local_instance(home) as writer, local_instance(home) as reader:
        results: list[dg.ExecuteInProcessResult] = []
        run = threading.Thread(
            target=lambda: results.append(
                dg.materialize([slow], instance=writer, raise_on_error=False)
            )
        )
        run.start()
        run_id = run_ids.get(timeout=60)
        reader.watch_event_logs(run_id, None, on_event)
        watching.set()
        run.join(timeout=90)
        reader.end_watch_event_logs(run_id, on_event)
    assert results, "the run did not end within 90 s"
    failures = [e.event_specific_data.error.message for e in results[0].get_step_failure_events()]
    assert results[0].success, failures


def test_another_process_sees_its_writes_while_its_connection_stays_open(tmp_path):
    """The webserver, the daemon and each run hold their own connection to the index."""
    home = tmp_path / "dagster_home"
    with local_instance(home) as ours:
        first = materialize_range(ours).run_id
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, dagster as dg; from pathlib import Path;"
                "from ml_assets.programs.instance import local_instance;"
                "i = local_instance(Path(sys.argv[1]));"
                "print(i.get_latest_materialization_event(dg.AssetKey('daily')).run_id);"
                "i.report_runless_asset_event(dg.AssetMaterialization("
                "'daily', partition='2026-01-05', metadata={'by': 'the other process'}))",
                str(home),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert other.stdout.split() == [first]
        latest = ours.get_latest_materialization_event(daily.key).asset_materialization
        assert latest.metadata["by"].value == "the other process"


def test_dispose_closes_the_index_and_wipe_the_runs(tmp_path):
    home = tmp_path / "dagster_home"
    runs = home / "history" / "runs"
    instance = local_instance(home)
    run_id = materialize_range(instance).run_id
    assert (runs / "index.db-wal").exists()  # the kept connection: SQLite keeps its WAL file
    instance.wipe()
    assert not (runs / f"{run_id}.db").exists()
    assert not instance.get_materialized_partitions(daily.key)
    again = materialize_range(instance).run_id  # the wiped storage works on
    assert instance.get_latest_materialization_event(daily.key).run_id == again
    instance.dispose()
    assert not (runs / "index.db-wal").exists()  # the last connection closed (checkpointed)
    with local_instance(home) as reopened:
        assert reopened.get_latest_materialization_event(daily.key).run_id == again


def test_a_bounded_number_of_run_engines_is_kept(tmp_path):
    storage = KeptIndexSqliteEventLogStorage(str(tmp_path / "runs"))
    try:
        for n in range(RUN_ENGINES_KEPT + 5):
            with storage.run_connection(f"run-{n}") as conn:
                conn.exec_driver_sql("select 1")
        assert list(storage._run_engines) == [f"run-{n}" for n in range(5, RUN_ENGINES_KEPT + 5)]
    finally:
        storage.dispose()
    assert not storage._run_engines and storage._index_engine is None
