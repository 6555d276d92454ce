"""Print the app's OpenAPI document (committed as openapi/openapi.json; a test checks it has not drifted)."""

from __future__ import annotations

import json
from typing import Any

from catalog.app import create_app
from catalog.config import Settings


def current_spec() -> dict[str, Any]:
    app = create_app(Settings(), "postgresql://unused@localhost/unused")
    return json.loads(json.dumps(app.openapi()))  # type: ignore[no-any-return]


if __name__ == "__main__":
    print(json.dumps(current_spec(), indent=2, sort_keys=True))
