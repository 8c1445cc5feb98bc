"""ml_assets: the machine-learning lifecycle as Dagster assets (README.md).

Importing the package turns transparent huge pages off for the process and the processes it
starts (``ml_assets.lib.huge_pages``: measured faster here; ``ML_ASSETS_HUGE_PAGES=on`` allows
them)."""

from ml_assets.lib import huge_pages

huge_pages.apply()
