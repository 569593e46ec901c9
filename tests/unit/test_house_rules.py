"""The module map in the README and the import contracts in pyproject.toml name every module, so a
new module cannot slip past either."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "isvc_operator"


def top_level_modules() -> set[str]:
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return modules | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}


def test_the_readme_module_map_names_every_module():
    readme = (ROOT / "README.md").read_text()
    map_text = readme[readme.index("## Module map") :]
    map_text = map_text[: map_text.index("\n## ")]
    missing = sorted(m for m in top_level_modules() if f" {m}.py " not in map_text and f" {m}/ " not in map_text)
    assert not missing, f"README.md's module map does not mention: {missing}"


def test_storage_is_forbidden_every_other_module_of_the_operator():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(
        c for c in config["tool"]["importlinter"]["contracts"] if c.get("source_modules") == ["isvc_operator.storage"]
    )
    forbidden = {
        m.removeprefix("isvc_operator.") for m in contract["forbidden_modules"] if m.startswith("isvc_operator.")
    }
    missing = sorted(top_level_modules() - {"storage"} - forbidden)
    assert not missing, f"pyproject.toml: add these to the storage contract's forbidden_modules: {missing}"
