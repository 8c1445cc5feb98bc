"""What each engine lane can do, so that workarounds are chosen per engine, not assumed.

The project's Spark code is written once against the Spark Connect DataFrame API; these traits
pick the few places where engines differ (measured, see DESIGN.md):

- ``delta_sql``: ``DESCRIBE HISTORY``, ``SHOW TBLPROPERTIES``, ``ALTER TABLE ... SET
  TBLPROPERTIES`` and ``VACUUM`` run on the engine. Sail 0.7 has none of them: table history,
  properties and maintenance go through delta-rs on the same files instead.
- ``cache``: ``DataFrame.persist()`` keeps the computed rows. Sail's ``cache()`` is a no-op, so
  a DataFrame used by several actions is written to Parquet once and read back instead.
- ``not_null_check_below_filter``: Sail checks NOT NULL columns on rows an upstream filter has
  already removed, unless a shuffle stands between them; Spark checks the rows it writes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineTraits:
    name: str
    delta_sql: bool
    cache: bool
    not_null_check_below_filter: bool


SAIL = EngineTraits("sail", delta_sql=False, cache=False, not_null_check_below_filter=True)
ENGINES: dict[str, EngineTraits] = {
    "sail": SAIL,
    "sail-cluster": EngineTraits(
        "sail-cluster", delta_sql=False, cache=False, not_null_check_below_filter=True
    ),
    "spark": EngineTraits("spark", delta_sql=True, cache=True, not_null_check_below_filter=False),
}
# Databricks (not a local lane): Delta's SQL everywhere; serverless compute cannot persist.
DATABRICKS = EngineTraits(
    "databricks", delta_sql=True, cache=True, not_null_check_below_filter=False
)
DATABRICKS_SERVERLESS = EngineTraits(
    "databricks-serverless", delta_sql=True, cache=False, not_null_check_below_filter=False
)


class UnknownEngineError(ValueError):
    """An engine name that is not one of the lanes."""


DEPLOYED_ENGINES = {e.name: e for e in (DATABRICKS, DATABRICKS_SERVERLESS)}


def engine_traits(name: str, *, lanes_only: bool = False) -> EngineTraits:
    """The traits of a lane (or, unless ``lanes_only``, of a deployment's engine)."""
    known = ENGINES if lanes_only else {**ENGINES, **DEPLOYED_ENGINES}
    try:
        return known[name]
    except KeyError:
        raise UnknownEngineError(
            f"ML_ASSETS_ENGINE={name!r} is not an engine lane; expected one of "
            f"{sorted(ENGINES)} ('sail' is the embedded default)."
        ) from None
