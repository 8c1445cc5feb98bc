"""Names shared across the project: catalog, tables, asset keys, groups, checks.

Stage names are the same everywhere: in ``lib/``, ``defs/``, the tests, asset key prefixes
and group names.
"""

from __future__ import annotations

from ml_assets.lib.lakehouse import TableId

CATALOG = "main"

# stages (asset key prefixes and group names)
LANDING = "landing"
RAW = "raw"

# tables
RAW_EVENTS_TABLE = TableId(CATALOG, RAW, "events")
RAW_USERS_TABLE = TableId(CATALOG, RAW, "users")


def quarantine_table(source: str) -> TableId:
    return TableId(CATALOG, RAW, f"{source}_quarantine")


# asset keys, as paths
DEMO_SOURCE_KEY = (LANDING, "demo_source")
RAW_EVENTS_KEY = (RAW, "events")
RAW_EVENTS_QUARANTINE_KEY = (RAW, "events_quarantine")
RAW_USERS_KEY = (RAW, "users")
RAW_USERS_QUARANTINE_KEY = (RAW, "users_quarantine")

# check names
CHECK_SCHEMA = "schema_matches_contract"
CHECK_KEYS_NOT_NULL = "keys_not_null"
CHECK_KEY_UNIQUE = "key_unique"
CHECK_VALUES_VALID = "values_valid"
CHECK_ROWS_CONSERVED = "rows_conserved"
CHECK_FRESH = "fresh"
CHECK_ONE_CURRENT_VERSION = "one_current_version_per_user"

# jobs
MAIN_JOB = "ml_lifecycle_job"
