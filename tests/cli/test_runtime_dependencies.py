"""`make run` installs the runtime dependencies only (pyproject's [project].dependencies, not the dev
extras): every third-party module the service's code imports must come from a distribution those
dependencies install — declared, or required by a declared one — so a runtime-only venv can start it."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _runtime_closure() -> set[str]:
    """Canonical names of the distributions the runtime dependencies install (with their extras)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    todo = [Requirement(r) for r in declared]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        seen.add(name)
        for text in metadata.requires(req.name) or []:
            inner = Requirement(text)
            environments = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if inner.marker is None or any(inner.marker.evaluate(env) for env in environments):
                todo.append(inner)
    return {s for s in seen if "[" not in s}


def _imported_top_level_modules() -> dict[str, str]:
    """Top-level module -> one file importing it, over every module of the `catalog` package."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "catalog").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_module_the_service_imports_is_a_runtime_dependency() -> None:
    closure = _runtime_closure()
    providers = metadata.packages_distributions()
    missing = []
    for module, where in sorted(_imported_top_level_modules().items()):
        if module in sys.stdlib_module_names or module == "catalog":
            continue
        distributions = {canonicalize_name(d) for d in providers.get(module, [])}
        if not distributions & closure:
            missing.append(f"{module} (imported by {where}; from {sorted(distributions) or 'nowhere'})")
    assert missing == []


def test_the_dev_tools_are_not_runtime_dependencies() -> None:
    closure = _runtime_closure()
    assert {"pytest", "mypy", "ruff", "playwright", "marquez-python"} & closure == set()
