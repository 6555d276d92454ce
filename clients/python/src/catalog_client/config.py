"""Where the catalog is and how to authenticate, resolved like the OpenLineage client: explicit arguments
first, then `CATALOG_URL` / `CATALOG_API_KEY`, then `OPENLINEAGE_URL` / `OPENLINEAGE_API_KEY`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from catalog_client.errors import ConfigurationError

URL_VARS = ("CATALOG_URL", "OPENLINEAGE_URL")
KEY_VARS = ("CATALOG_API_KEY", "OPENLINEAGE_API_KEY")
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Settings:
    url: str
    api_key: str | None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def resolve(
    url: str | None = None, api_key: str | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    env = os.environ if environ is None else environ
    found = url or next((env[v] for v in URL_VARS if env.get(v)), None)
    if not found:
        raise ConfigurationError(f"no catalog URL: pass url=... or set {' or '.join(URL_VARS)}")
    if not found.startswith(("http://", "https://")):
        raise ConfigurationError(f"the catalog URL must start with http:// or https://, not {found!r}")
    key = api_key if api_key is not None else next((env[v] for v in KEY_VARS if env.get(v)), None)
    return Settings(found.rstrip("/"), key)
