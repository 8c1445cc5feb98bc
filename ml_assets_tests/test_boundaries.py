"""The package's layering, read from the imports of every module: ``lib`` is free of Dagster
and of the adapters, ``names`` is a leaf, a stage package in ``defs`` never imports another
stage, and the Pipes training script needs only ``lib`` and ``dagster_pipes``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ml_assets"
STAGES = (
    "landing",
    "raw",
    "features",
    "training_sets",
    "models",
    "registry",
    "serving",
    "monitoring",
)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def offending(paths, forbidden) -> dict[str, list[str]]:
    bad = {}
    for path in paths:
        hits = sorted(m for m in imports(path) if forbidden(m, path))
        if hits:
            bad[str(path.relative_to(ROOT))] = hits
    return bad


def test_lib_imports_neither_dagster_nor_the_adapters():
    def forbidden(module: str, _path: Path) -> bool:
        top = module.split(".")
        return top[0] in ("dagster", "dagster_pipes") or module.startswith(
            ("ml_assets.defs", "ml_assets.resources", "ml_assets.deployments")
        )

    assert offending(sorted((ROOT / "lib").rglob("*.py")), forbidden) == {}


def test_names_is_a_leaf():
    assert {m for m in imports(ROOT / "names.py") if m.startswith("ml_assets")} == set()


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_package_imports_no_other_stage(stage):
    def forbidden(module: str, _path: Path) -> bool:
        parts = module.split(".")
        return (
            parts[:2] == ["ml_assets", "defs"]
            and len(parts) > 2
            and (parts[2] in STAGES and parts[2] != stage)
        )

    assert offending(sorted((ROOT / "defs" / stage).rglob("*.py")), forbidden) == {}


def test_the_pipes_training_script_needs_only_lib_and_dagster_pipes():
    script = imports(ROOT / "pipes" / "train_model.py")
    project = {m for m in script if m.startswith("ml_assets")}
    assert project and all(m.startswith("ml_assets.lib") for m in project)
    assert "dagster" not in {m.split(".")[0] for m in script}


def test_the_package_root_is_the_code_location_and_programs_stand_apart():
    root = {p.name for p in ROOT.glob("*.py")}
    assert root == {"__init__.py", "definitions.py", "deployments.py", "names.py"}

    def forbidden(module: str, _path: Path) -> bool:
        return module.startswith("ml_assets.programs")

    code = [p for p in sorted(ROOT.rglob("*.py")) if p.relative_to(ROOT).parts[0] != "programs"]
    assert offending(code, forbidden) == {}


def test_no_stage_factory_names_a_model():
    """Every model-specific name comes from a declaration: the factories in defs/ never spell
    out a model, a label or a model's table."""
    words = ("churn", "purchase")
    spelled = {
        str(p.relative_to(ROOT)): [w for w in words if w in p.read_text().lower()]
        for p in sorted((ROOT / "defs").rglob("*.py"))
    }
    assert {k: v for k, v in spelled.items() if v} == {}
