"""Names shared across the project: catalog, tables, asset keys, groups, checks.

Stage names are the same everywhere: in ``lib/``, ``defs/``, the tests, asset key prefixes
and group names. A leaf: plain strings and tuples of them, importing nothing of the project
(``lib`` parses the table names into ``TableId``).
"""

from __future__ import annotations

CATALOG = "main"

# stages (asset key prefixes and group names)
LANDING = "landing"
RAW = "raw"
FEATURES = "features"
TRAINING_SETS = "training_sets"
MODELS = "models"
REGISTRY = "registry"
SERVING = "serving"
MONITORING = "monitoring"

# tables (catalog.schema.table)
RAW_EVENTS_TABLE = f"{CATALOG}.{RAW}.events"
RAW_USERS_TABLE = f"{CATALOG}.{RAW}.users"
USER_DAILY_ACTIVITY_TABLE = f"{CATALOG}.{FEATURES}.user_daily_activity"
USER_ACTIVITY_TABLE = f"{CATALOG}.{FEATURES}.user_activity"
USER_PROFILE_TABLE = f"{CATALOG}.{FEATURES}.user_profile"
CHURN_LABELS_TABLE = f"{CATALOG}.{TRAINING_SETS}.churn_labels"
CHURN_TRAINING_SET_TABLE = f"{CATALOG}.{TRAINING_SETS}.churn_training_set"


def quarantine_table(source: str) -> str:
    return f"{CATALOG}.{RAW}.{source}_quarantine"


# asset keys, as paths
DEMO_SOURCE_KEY = (LANDING, "demo_source")
RAW_EVENTS_KEY = (RAW, "events")
RAW_EVENTS_QUARANTINE_KEY = (RAW, "events_quarantine")
RAW_USERS_KEY = (RAW, "users")
RAW_USERS_QUARANTINE_KEY = (RAW, "users_quarantine")
USER_DAILY_ACTIVITY_KEY = (FEATURES, "user_daily_activity")
USER_ACTIVITY_KEY = (FEATURES, "user_activity")
USER_PROFILE_KEY = (FEATURES, "user_profile")
ONLINE_USER_FEATURES_KEY = (FEATURES, "online_user_features")

# registered models (Unity-Catalog-style three-level names)
CHURN_MODEL_NAME = f"{CATALOG}.{MODELS}.churn_classifier"

# MLflow tags on runs and model versions, and Delta table properties (one prefix)
TAG_PREFIX = "ml_assets."
TAG_MODEL = "ml_assets.model"  # the declared model a run trained
TAG_MONITOR = "ml_assets.monitor"  # the drift monitor (asset) a run's reports are from
TAG_TRAINING_SET = "ml_assets.training_set"
TAG_TRAINING_SET_VERSION = "ml_assets.training_set_version"
TAG_TRAINING_SET_HASH = "ml_assets.training_set_hash"
TAG_GIT_COMMIT = "ml_assets.git_commit"
TAG_DAGSTER_RUN_ID = "ml_assets.dagster_run_id"
TAG_DAGSTER_RUN_URL = "ml_assets.dagster_run_url"  # the run in the Dagster UI
TAG_DAGSTER_ASSET_URL = "ml_assets.dagster_asset_url"  # the asset that made it, in the UI
TAG_REGISTERED_BY_RUN = "ml_assets.registered_by_dagster_run"
TAG_REGISTERED_BY_RUN_URL = "ml_assets.registered_by_dagster_run_url"
TAG_LOGGED_MODEL_ID = "ml_assets.logged_model_id"  # the pyfunc a registered version points at
TAG_TABLE_VERSION_PREFIX = "ml_assets.version."  # + table name: its Delta version
TAG_WINDOW_PREFIX = "ml_assets.window."  # + split: its label_ts window
TAG_GATE_PREFIX = "ml_assets.gate."  # + the gate's outcome fields
TAG_AUDIT_PREFIX = "ml_assets.audit"  # + .<action>.<field>: alias moves
TAG_ABLATED_FEATURES = "ml_assets.ablated_features"  # features zeroed before training
TAG_OWNER = "ml_assets.owner"  # a registered model's owning team
TAG_USE_CASE = "ml_assets.use_case"  # what a registered model is for
NOTE_TAG = "mlflow.note.content"  # MLflow's description of a run or an experiment
OWNER_PROPERTY = "ml_assets.owner"  # a Delta table's owning team

# check names
CHECK_SCHEMA = "schema_matches_contract"
CHECK_KEYS_NOT_NULL = "keys_not_null"
CHECK_KEY_UNIQUE = "key_unique"
CHECK_VALUES_VALID = "values_valid"
CHECK_ROWS_CONSERVED = "rows_conserved"
CHECK_FRESH = "fresh"
CHECK_ONE_CURRENT_VERSION = "one_current_version_per_user"
CHECK_NO_BACKDATED_CHANGES = "no_backdated_changes"
CHECK_NULL_RATES = "null_rates_within_ceilings"
CHECK_NO_FUTURE_FEATURES = "no_future_feature_values"
CHECK_FEATURE_WINDOWS_COMPLETE = "feature_windows_complete"
CHECK_MATCHES_REFERENCE = "matches_reference_join"
CHECK_ONE_ROW_PER_SPINE_ROW = "one_row_per_spine_row"
CHECK_SPLIT_TIME_ORDERED = "split_is_time_ordered"
CHECK_NO_SINGLE_FEATURE_LEAK = "no_single_feature_leak"
CHECK_METRICS_MEET_THRESHOLDS = "metrics_meet_thresholds"
CHECK_TRIALS_RECORDED = "trials_recorded"
CHECK_GATE_PASSED = "promotion_gate_passed"
CHECK_CHAMPION_CONSISTENT = "champion_alias_consistent"
CHECK_ONLINE_OFFLINE = "online_offline_consistent"
CHECK_ROUTES_SUM = "routes_sum_to_100"
CHECK_ENTITIES_READY = "served_entities_ready"
CHECK_SIGNATURE_SERVABLE = "signatures_match_online_features"
CHECK_FEATURE_DRIFT = "feature_drift_within_limits"
CHECK_PREDICTION_DRIFT = "prediction_drift_within_limits"
CHECK_MODEL_QUALITY = "model_quality_within_limits"
CHECK_LAKEHOUSE_MONITOR_HEALTHY = "lakehouse_monitor_healthy"
CHECK_PREDICTIONS_VALID = "predictions_valid"
CHECK_VERSION_COMPLETE = "version_signature_and_lineage_complete"
CHECK_DAYS_LANDED = "every_requested_day_landed"

# jobs
MAIN_JOB = "ml_lifecycle_job"
ROLLBACK_JOB = "rollback_champion"
DAILY_FEATURES_JOB = "daily_features_job"
RETRAINING_JOB = "retraining_job"
INFERENCE_LOG_JOB = "inference_log_job"
MODEL_QUALITY_JOB = "model_quality_job"
TABLE_MAINTENANCE_JOB = "table_maintenance_job"
