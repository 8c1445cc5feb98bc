"""Jobs (and later schedules and sensors)."""

from __future__ import annotations

import dagster as dg

from ml_assets import names


def build_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    return [
        dg.define_asset_job(
            names.MAIN_JOB,
            selection=dg.AssetSelection.all(),
            description="The whole lifecycle: land the source, ingest raw tables, run every check.",
        ),
    ]
