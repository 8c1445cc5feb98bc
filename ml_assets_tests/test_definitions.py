"""The code location loads and its asset graph is the one we expect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import names
from ml_assets.definitions import build_definitions
from ml_assets.deployments import REPO_ROOT, DeploymentError, current_settings
from ml_assets.lib.models.churn_classifier import REGISTERED_MODEL
from ml_assets.resources.spark import EmbeddedSailSpark, SparkConnectRemote
from ml_assets.resources.training import InProcessTraining, SubprocessTraining

EXPECTED_ASSETS = {
    "landing/demo_source": "landing",
    "raw/users": "raw",
    "raw/users_quarantine": "raw",
    "raw/events": "raw",
    "raw/events_quarantine": "raw",
    "features/user_daily_activity": "features",
    "features/user_activity": "features",
    "features/user_profile": "features",
    "features/online_user_features": "features",
}
# every declared model's line: (stem, model name)
MODEL_LINES = (("churn", "churn_classifier"), ("purchase", "purchase_propensity"))
for stem, model in MODEL_LINES:
    EXPECTED_ASSETS |= {
        f"training_sets/{stem}_labels": "training_sets",
        f"training_sets/{stem}_training_set": "training_sets",
        f"models/{model}": "models",
        f"registry/{model}_version": "registry",
        f"registry/{model}_champion": "registry",
        f"serving/{stem}_endpoint_config": "serving",
        f"serving/{stem}_predictions": "serving",
        f"serving/{stem}_inference_log": "serving",
        f"monitoring/{stem}_feature_drift": "monitoring",
        f"monitoring/{stem}_prediction_drift": "monitoring",
        f"monitoring/{stem}_model_quality": "monitoring",
        f"monitoring/{stem}_canary_verdict": "monitoring",
    }
FEATURE_CHECKS = (
    "schema_matches_contract",
    "keys_not_null",
    "key_unique",
    "values_valid",
    "null_rates_within_ceilings",
    "fresh",
)
EXPECTED_CHECKS = {
    ("raw/events", "schema_matches_contract"),
    ("raw/events", "keys_not_null"),
    ("raw/events", "key_unique"),
    ("raw/events", "values_valid"),
    ("raw/events", "rows_conserved"),
    ("raw/events", "fresh"),
    ("raw/events_quarantine", "schema_matches_contract"),
    ("raw/users", "schema_matches_contract"),
    ("raw/users", "keys_not_null"),
    ("raw/users", "key_unique"),
    ("raw/users", "values_valid"),
    ("raw/users", "rows_conserved"),
    ("raw/users", "fresh"),
    ("raw/users", "one_current_version_per_user"),
    ("raw/users", "no_backdated_changes"),
    ("raw/users_quarantine", "schema_matches_contract"),
    *(
        (f"features/{table}", check)
        for table in ("user_daily_activity", "user_activity", "user_profile")
        for check in FEATURE_CHECKS
    ),
    *(
        (f"training_sets/{stem}_labels", check)
        for stem, _ in MODEL_LINES
        for check in ("schema_matches_contract", "keys_not_null", "key_unique", "values_valid")
    ),
    *(
        (f"training_sets/{stem}_training_set", check)
        for stem, _ in MODEL_LINES
        for check in (
            "schema_matches_contract",
            "keys_not_null",
            "key_unique",
            "no_future_feature_values",
            "feature_windows_complete",
            "matches_reference_join",
            "one_row_per_spine_row",
            "split_is_time_ordered",
            "no_single_feature_leak",
        )
    ),
}
EXPECTED_CHECKS.add(("features/online_user_features", "online_offline_consistent"))
EXPECTED_CHECKS.add(("landing/demo_source", "every_requested_day_landed"))
for stem, model in MODEL_LINES:
    EXPECTED_CHECKS |= {
        (f"models/{model}", "metrics_meet_thresholds"),
        (f"models/{model}", "trials_recorded"),
        (f"registry/{model}_version", "version_signature_and_lineage_complete"),
        (f"registry/{model}_champion", "promotion_gate_passed"),
        (f"registry/{model}_champion", "champion_alias_consistent"),
        (f"serving/{stem}_endpoint_config", "routes_sum_to_100"),
        (f"serving/{stem}_endpoint_config", "served_entities_ready"),
        (f"serving/{stem}_endpoint_config", "signatures_match_online_features"),
        (f"serving/{stem}_predictions", "predictions_valid"),
        (f"monitoring/{stem}_feature_drift", "feature_drift_within_limits"),
        (f"monitoring/{stem}_prediction_drift", "prediction_drift_within_limits"),
        (f"monitoring/{stem}_model_quality", "model_quality_within_limits"),
    }
# the gate's own check: when it fails in enabled mode the asset raises instead
NON_BLOCKING = {
    "fresh",
    "no_single_feature_leak",
    "promotion_gate_passed",
    "feature_drift_within_limits",  # monitoring reports; the retraining sensor acts on it
    "prediction_drift_within_limits",
    "model_quality_within_limits",  # the quality sensor acts on it
}


@pytest.fixture
def defs(tmp_path) -> dg.Definitions:
    return build_definitions(current_settings({"ML_ASSETS_HOME": str(tmp_path)}))


def test_the_asset_graph_has_the_expected_keys_groups_and_checks(defs):
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == EXPECTED_ASSETS
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == EXPECTED_CHECKS
    upstream = {k.to_user_string() for k in graph.get(dg.AssetKey(["raw", "events"])).parent_keys}
    assert upstream == {"landing/demo_source", "raw/users"}
    training_inputs = graph.get(dg.AssetKey(["training_sets", "churn_training_set"])).parent_keys
    assert {k.to_user_string() for k in training_inputs} == {
        "training_sets/churn_labels",
        "features/user_activity",
        "features/user_profile",
    }


def test_user_activity_partitions_read_the_89_days_before_them_of_the_daily_blocks(defs):
    graph = defs.resolve_asset_graph()
    activity = dg.AssetKey(["features", "user_activity"])
    daily = dg.AssetKey(["features", "user_daily_activity"])
    mapping = graph.get_partition_mapping(activity, daily)
    assert isinstance(mapping, dg.TimeWindowPartitionMapping)
    partitions = graph.get(activity).partitions_def
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        partitions.subset_with_partition_keys(["2026-04-30"]), partitions, partitions
    ).partitions_subset.get_partition_keys()
    assert (upstream[0], upstream[-1], len(upstream)) == ("2026-01-31", "2026-04-30", 90)
    description = graph.get(activity).description
    assert "| `events_7d` | bigint | 7d |" in description


def test_blocking_checks_are_the_contract_checks_and_freshness_only_warns(defs):
    graph = defs.resolve_asset_graph()
    blocking = {
        (k.asset_key.to_user_string(), k.name)
        for k in graph.asset_check_keys
        if graph.get_check_spec(k).blocking
    }
    assert blocking == {c for c in EXPECTED_CHECKS if c[1] not in NON_BLOCKING}


def test_the_registry_follows_the_model_and_rollback_is_a_job(defs):
    graph = defs.resolve_asset_graph()
    champion = graph.get(dg.AssetKey(["registry", "churn_classifier_champion"]))
    assert {k.to_user_string() for k in champion.parent_keys} == {
        "registry/churn_classifier_version"
    }
    version = graph.get(dg.AssetKey(["registry", "churn_classifier_version"]))
    assert {k.to_user_string() for k in version.parent_keys} == {"models/churn_classifier"}
    assert defs.resolve_job_def("rollback_champion").description.startswith(
        "Moves a model's `champion` alias back to `previous_champion`"
    )
    registry = defs.resources["model_registry"].open()
    assert registry.full_name(REGISTERED_MODEL) == "main.models.churn_classifier"


def test_raw_events_are_daily_partitioned_over_the_source_calendar_and_backfill_in_one_run(
    tmp_path,
):
    # 92 warm-up days before the first observation month (lib/source.WARMUP_DAYS), then 120
    # (demo) or 70 (tiny) days
    for scale, days in (("demo", 212), ("tiny", 162)):
        d = build_definitions(
            current_settings({"ML_ASSETS_HOME": str(tmp_path), "ML_ASSETS_SCALE": scale})
        )
        events = d.resolve_assets_def(dg.AssetKey(["raw", "events"]))
        keys = events.partitions_def.get_partition_keys()
        assert (keys[0], len(keys)) == ("2025-10-01", days)
        assert events.backfill_policy == dg.BackfillPolicy.single_run()


def test_the_partitions_of_your_own_source_start_at_its_setting_and_run_to_today(tmp_path):
    settings = current_settings(
        {"ML_ASSETS_HOME": str(tmp_path), "ML_ASSETS_PARTITIONS_START": "2025-11-01"}
    )
    events = build_definitions(settings).resolve_assets_def(dg.AssetKey(["raw", "events"]))
    keys = events.partitions_def.get_partition_keys()
    assert keys[0] == "2025-11-01" and len(keys) > 365  # open-ended: every day up to today
    with pytest.raises(DeploymentError, match=r"ML_ASSETS_PARTITIONS_START='11/01'; expected"):
        current_settings({"ML_ASSETS_PARTITIONS_START": "11/01"})


def test_every_check_says_what_it_guards_and_what_a_failure_means(defs):
    graph = defs.resolve_asset_graph()
    undescribed = sorted(
        f"{k.asset_key.to_user_string()}:{k.name}"
        for k in graph.asset_check_keys
        if len(graph.get_check_spec(k).description or "") < 30
    )
    assert undescribed == []
    gate = graph.get_check_spec(
        dg.AssetCheckKey(
            dg.AssetKey(["registry", "churn_classifier_champion"]), "promotion_gate_passed"
        )
    )
    assert "A failure means the champion alias did not move" in gate.description


def test_every_asset_has_owners_stage_and_model_tags_and_scheduled_ones_a_freshness_policy(defs):
    graph = defs.resolve_asset_graph()
    daily, weekly = set(), set()
    for key in graph.get_all_asset_keys():
        node, name = graph.get(key), key.to_user_string()
        assert node.owners == ["team:ml-platform"], name
        assert node.tags["stage"] == key.path[0], name
        model = next((m for m in ("churn", "purchase") if m in key.path[-1]), None)
        assert node.tags.get("model", "").startswith(model or "none") or (
            model is None and "model" not in node.tags
        ), (name, node.tags)
        policy = node.freshness_policy
        if policy is not None:
            (daily if policy.deadline_cron == "0 3 * * *" else weekly).add(name)
        assert "partitioned_by" not in node.metadata, name  # said "(none)" on daily assets
    assert daily == {
        "raw/events",
        "raw/events_quarantine",
        "features/user_daily_activity",
        "features/user_activity",
        "monitoring/churn_feature_drift",
        "monitoring/purchase_feature_drift",
        # the model-quality job's, daily at 02:00
        *(
            f"monitoring/{stem}_{a}"
            for stem, _ in MODEL_LINES
            for a in ("model_quality", "canary_verdict")
        ),
    }
    unscheduled = set(EXPECTED_ASSETS) - daily - weekly
    # the inference logs run hourly and hold whatever traffic came: no freshness deadline
    inference_logs = {f"serving/{stem}_inference_log" for stem, _ in MODEL_LINES}
    assert unscheduled == {"landing/demo_source", "raw/users", "raw/users_quarantine"} | (
        inference_logs
    )
    events = graph.get(dg.AssetKey(["raw", "events"]))
    assert events.metadata["delta_partition_columns"] == "event_date"


def _config_fields(config_type, path=""):
    """(path, field) of every field of a config schema, nested ones included."""
    fields = getattr(config_type, "fields", None)
    if fields is None:
        inner = getattr(config_type, "inner_type", None)
        return [] if inner is None else _config_fields(inner, path + "[]")
    found = []
    for name, field in fields.items():
        found.append((f"{path}.{name}", field))
        found += _config_fields(field.config_type, f"{path}.{name}")
    return found


def test_every_launchpad_setting_has_a_description_and_a_default_when_optional(defs):
    nodes = [a.node_def for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    nodes += [n for j in defs.jobs if isinstance(j, dg.JobDefinition) for n in j.all_node_defs]
    problems, fields = [], 0
    for node in nodes:
        if node.config_schema is None or node.config_schema.config_type is None:
            continue
        for path, field in _config_fields(node.config_schema.config_type):
            fields += 1
            if not field.description:
                problems.append(f"{node.name}{path}: no description")
            if not field.is_required and not field.default_provided:
                problems.append(f"{node.name}{path}: optional without a default")
    assert problems == [] and fields > 30
    gate = defs.resolve_assets_def(dg.AssetKey(["registry", "churn_classifier_champion"]))
    thresholds = gate.node_def.config_schema.config_type.fields["thresholds"]
    assert thresholds.default_value[0] == {
        "metric": "roc_auc",
        "threshold": 0.75,
        "greater_is_better": True,
        "max_regression": 0.01,
    }


def test_the_main_job_selects_every_asset(defs):
    job = defs.resolve_job_def(names.MAIN_JOB)
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == set(EXPECTED_ASSETS)


def test_resources_are_bound_once_from_the_deployment_table(tmp_path):
    embedded = build_definitions(current_settings({"ML_ASSETS_HOME": str(tmp_path)}))
    assert isinstance(embedded.resources["spark"], EmbeddedSailSpark)
    assert embedded.resources["lakehouse"].warehouse_dir == str(tmp_path / "warehouse")
    remote = build_definitions(
        current_settings(
            {"ML_ASSETS_HOME": str(tmp_path), "ML_ASSETS_SPARK_REMOTE": "sc://h:15002"}
        )
    )
    assert isinstance(remote.resources["spark"], SparkConnectRemote)
    assert remote.resources["lakehouse"].spark.remote == "sc://h:15002"


def test_the_training_step_runs_in_process_or_as_a_pipes_subprocess(tmp_path):
    def launcher(**env):
        settings = current_settings({"ML_ASSETS_HOME": str(tmp_path), **env})
        return build_definitions(settings).resources["training_launcher"]

    assert isinstance(launcher(), InProcessTraining)
    assert isinstance(launcher(ML_ASSETS_TRAINING="subprocess"), SubprocessTraining)
    with pytest.raises(DeploymentError, match=r"ML_ASSETS_TRAINING='databricks'; expected one"):
        launcher(ML_ASSETS_TRAINING="databricks")


def test_each_engine_lane_binds_its_spark_resource_and_traits(tmp_path):
    def spark_of(**env):
        settings = current_settings({"ML_ASSETS_HOME": str(tmp_path), **env})
        return build_definitions(settings).resources["spark"]

    sail = spark_of()
    assert (sail.mode, sail.traits.name, sail.traits.delta_sql) == ("local", "sail", False)
    cluster = spark_of(ML_ASSETS_ENGINE="sail-cluster")
    assert (cluster.mode, cluster.workers, cluster.traits.name) == (
        "local-cluster",
        2,
        "sail-cluster",
    )
    spark = spark_of(ML_ASSETS_ENGINE="spark", ML_ASSETS_SPARK_CONNECT_PORT="16001")
    assert isinstance(spark, SparkConnectRemote) and spark.remote == "sc://127.0.0.1:16001"
    assert spark.traits.delta_sql and spark.traits.cache
    assert not spark.traits.not_null_check_below_filter
    external = spark_of(ML_ASSETS_ENGINE="sail", ML_ASSETS_SPARK_REMOTE="sc://h:1")
    assert external.traits.name == "sail"  # an external Sail server: Sail's workarounds


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ML_ASSETS_DEPLOYMENT": "cloud"}, "is not a deployment"),
        ({"ML_ASSETS_SCALE": "huge"}, "ML_ASSETS_SCALE='huge'"),
        ({"ML_ASSETS_SPARK_REMOTE": "localhost:15002"}, "sc://host:port"),
    ],
)
def test_an_invalid_environment_is_refused_with_a_clear_message(env, message):
    with pytest.raises(DeploymentError, match=message):
        current_settings(env)


def test_the_code_location_loads_from_workspace_yaml_the_way_dagster_dev_loads_it(tmp_path):
    env = {**os.environ, "ML_ASSETS_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dh")}
    (tmp_path / "dh").mkdir()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            str(REPO_ROOT / "workspace.yaml"),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Validation successful" in done.stdout + done.stderr
