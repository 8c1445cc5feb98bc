"""The lanes agree: the whole tiny graph on the embedded engine and on a local Apache Spark
cluster with Delta gives the same check results, the same rows in every table (compared by an
exact digest of each table's rows, table by table) and the same training-set hash."""

from __future__ import annotations

import json

import pytest

from ml_assets.programs import check
from ml_assets.programs.lanes import compare, main_tables


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


def test_the_digest_sees_the_last_bit_of_a_double_and_ignores_row_order(spark):
    from ml_assets.programs.lanes import table_digest

    a = spark.createDataFrame([(1, 0.1 + 0.2), (2, 1.0)], "id bigint, x double")
    shuffled = spark.createDataFrame([(2, 1.0), (1, 0.1 + 0.2)], "id bigint, x double")
    last_bit = spark.createDataFrame([(1, 0.3), (2, 1.0)], "id bigint, x double")  # 0.1+0.2 != 0.3
    assert table_digest(a) == table_digest(shuffled)
    assert table_digest(a)["sha256"] != table_digest(last_bit)["sha256"]
    assert table_digest(a)["rows"] == 2


def test_compare_names_every_difference_between_two_lanes():
    base = {
        "engine": "sail",
        "success": True,
        "training_set_content_hashes": {"churn_classifier": "h1"},
        "checks": {"raw/users:key_unique": {"passed": True, "severity": "ERROR"}},
        "tables": {"main.raw.users": {"rows": 3, "sha256": "a"}},
        "champion_test_metrics": {"champion_test_roc_auc": 0.95},
    }
    same = {**base, "engine": "spark"}
    assert compare(base, same) == []
    other = {
        **same,
        "training_set_content_hashes": {"churn_classifier": "h2"},
        "checks": {"raw/users:key_unique": {"passed": False, "severity": "ERROR"}},
        "tables": {"main.raw.users": {"rows": 3, "sha256": "b"}},
    }
    differences = compare(base, other)
    assert len(differences) == 3
    assert any("tables main.raw.users" in d for d in differences)
    assert any("training_set_content_hashes churn_classifier: h1 != h2" in d for d in differences)
