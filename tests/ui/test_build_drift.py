"""The committed UI build (catalog/web/static) is what `ui/` builds from its lockfile, as the OpenAPI drift
test does for the API document. The build is deterministic (fixed asset names, no hashes or timestamps),
so a byte-for-byte comparison is the check; the same install then runs the UI's logic tests (`npm test`).
It needs npm and the registry: it runs in CI (CI=true) and is
skipped elsewhere unless CATALOG_UI_DRIFT=1."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "ui"
COMMITTED = ROOT / "catalog" / "web" / "static"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_committed_ui_build_matches_the_sources(tmp_path: Path) -> None:
    if not (os.environ.get("CI") == "true" or os.environ.get("CATALOG_UI_DRIFT") == "1"):
        pytest.skip(
            "rebuilding the UI takes a minute and the npm registry: CI runs it (or CATALOG_UI_DRIFT=1)"
        )
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    source = tmp_path / "ui"
    shutil.copytree(UI, source, ignore=shutil.ignore_patterns("node_modules"))
    out = tmp_path / "out"
    env = dict(os.environ, CATALOG_UI_OUT=str(out))
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=source, env=env, check=True, capture_output=True
    )
    subprocess.run(["npm", "run", "build"], cwd=source, env=env, check=True, capture_output=True)
    # the UI's own logic tests (vitest: path highlighting, graph merging, layout, schema diff, product flows)
    tested = subprocess.run(["npm", "test"], cwd=source, env=env, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-2000:]
    built, committed = _files(out), _files(COMMITTED)
    assert sorted(built) == sorted(committed), "run `make ui` and commit catalog/web/static"
    differing = [name for name in built if built[name] != committed[name]]
    assert differing == [], f"run `make ui` and commit catalog/web/static: {differing} differ"
