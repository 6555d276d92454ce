"""The committed OpenAPI document is what the app serves; every operation documents its errors."""

from __future__ import annotations

import json
from pathlib import Path

from catalog.api.openapi_dump import current_spec

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_spec_matches_the_app() -> None:
    assert json.loads(COMMITTED.read_text()) == current_spec(), (
        "run `make openapi` and commit openapi/openapi.json"
    )


def test_every_operation_has_a_summary_and_documents_401() -> None:
    for path, operations in current_spec()["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method} {path}"
            if path not in ("/health", "/ready"):  # the two open endpoints
                assert "401" in operation["responses"], f"{method} {path}"
