"""ml_assets: the machine-learning lifecycle as Dagster assets (README.md).

Importing the package turns transparent huge pages off for the process and the processes it
starts (``ml_assets.lib.huge_pages``: measured faster here; ``ML_ASSETS_HUGE_PAGES=on`` allows
them)."""

import os

from ml_assets.lib import huge_pages

# a setting of the process, not of the deployment: read here, not in deployments.py (README)
huge_pages.apply(
    os.environ.get(huge_pages.SETTING),
    on_databricks=bool(os.environ.get("DATABRICKS_RUNTIME_VERSION")),
)
