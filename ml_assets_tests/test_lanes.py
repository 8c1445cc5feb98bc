"""The lanes agree: the whole tiny graph on the embedded engine and on a local Apache Spark
cluster with Delta gives the same check results, the same rows in every table (compared by an
exact digest of each table's rows, table by table) and the same training-set hash."""

from __future__ import annotations

import json

import pytest

from ml_assets import check
from ml_assets.lanes import compare, main_tables


@pytest.mark.lanes
def test_sail_and_spark_give_identical_tables_checks_and_training_set(
    tmp_path, monkeypatch, spark_lane
):
    prints = {}
    for lane in ("sail", "spark"):
        monkeypatch.setenv("ML_ASSETS_ENGINE", lane)
        target = tmp_path / f"lane-{lane}.json"
        status = check.main(
            ["--home", str(tmp_path / lane), "--junit", str(tmp_path / f"{lane}.xml")]
            + ["--fingerprint", str(target)]
        )
        assert status == 0, f"make check failed on the {lane} lane"
        prints[lane] = json.loads(target.read_text())
    sail, spark = prints["sail"], prints["spark"]
    assert (sail["engine"], spark["engine"]) == ("sail", "spark")
    assert set(sail["tables"]) == {str(t.name) for t in main_tables()}
    assert all(t["rows"] > 0 for t in sail["tables"].values())
    assert len(sail["checks"]) > 50 and all(c["passed"] for c in sail["checks"].values())
    differences = compare(sail, spark)
    assert differences == [], "\n".join(differences)
