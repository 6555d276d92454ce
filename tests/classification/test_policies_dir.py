"""The PII name rules come from the policies directory's classification.yaml (CATALOG_POLICIES_DIR), are
re-read by POST /api/v1/policy/reload, and a broken or missing file is refused, never silently replaced
by the repository's copy."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from catalog.app import create_app
from catalog.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.factories import dataset, run_event, schema

REPO_POLICIES = Path(__file__).resolve().parents[2] / "catalog" / "policies"
NS = "postgres://crm-db:5432"

# A site's own rule, absent from the repository's file: loyalty card numbers are personal data here.
LOYALTY = {
    "tag": "PII.LOYALTY_CARD",
    "category": "personal_identifier",
    "confidence": 0.8,
    "patterns": [["loyalty", "card"], ["cartao", "fidelidade"]],
}


def policies_copy(tmp_path: Path, edit: Any = None) -> Path:
    """The repository's policies in a directory of our own, classification.yaml edited by `edit(doc)`."""
    target = tmp_path / "site-policies"
    shutil.copytree(REPO_POLICIES, target)
    if edit is not None:
        path = target / "classification.yaml"
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        edit(document)
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return target


def site_rules(document: dict[str, Any]) -> None:
    document["rules"] = [r for r in document["rules"] if r["tag"] != "PII.CPF"] + [LOYALTY]


@asynccontextmanager
async def serving(settings: Settings, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database_url)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://catalog",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as http,
    ):
        yield http


async def ingest_table(client: httpx.AsyncClient, name: str, *columns: str) -> dict[str, list[str]]:
    """Ingest one output table with these STRING columns; its detected tags per column."""
    event = run_event(outputs=[dataset(NS, name, schema=schema(*((c, "STRING") for c in columns)))])
    response = await client.post("/api/v1/lineage/batch", content=orjson.dumps([event]))
    assert response.status_code in (200, 204), response.text
    response = await client.get("/api/v1/classifications", params={"namespace": NS, "dataset": name})
    assert response.status_code == 200, response.text
    found: dict[str, list[str]] = {}
    for c in response.json()["classifications"]:
        found.setdefault(c["field"], []).append(c["tag"])
    return found


async def test_the_rules_come_from_catalog_policies_dir(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = policies_copy(tmp_path, site_rules)
    monkeypatch.setenv("CATALOG_POLICIES_DIR", str(directory))
    settings = Settings(home=tmp_path / "home", admin_token=ADMIN_TOKEN, log_format="console")
    assert settings.policies_dir == directory
    async with serving(settings, database_url) as client:
        found = await ingest_table(client, "crm.members", "loyalty_card", "cpf", "email")
    # The site's rule applies, the rule it removed does not, the ones it kept still do.
    assert found == {"loyalty_card": ["PII.LOYALTY_CARD"], "email": ["PII.EMAIL"]}


async def test_reload_rereads_classification_yaml_and_refuses_a_broken_one(
    tmp_path: Path, database_url: str
) -> None:
    directory = policies_copy(tmp_path)
    settings = Settings(
        home=tmp_path / "home", admin_token=ADMIN_TOKEN, log_format="console", policies_dir=directory
    )
    path = directory / "classification.yaml"
    async with serving(settings, database_url) as client:
        assert await ingest_table(client, "crm.members_v1", "loyalty_card", "cpf") == {"cpf": ["PII.CPF"]}

        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        site_rules(document)
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        # Same mtime as before is possible on coarse clocks: the reload must not depend on it.
        os.utime(path, ns=(0, 0))
        response = await client.post("/api/v1/policy/reload")
        assert response.status_code == 200, response.text
        assert response.json()["classificationRules"] == len(document["rules"])
        assert await ingest_table(client, "crm.members_v2", "loyalty_card", "cpf") == {
            "loyalty_card": ["PII.LOYALTY_CARD"]
        }

        # A broken edit: the reload names the file and the problem, and the last good rules stay in force.
        document["rules"].append({"tag": "PII.BROKEN", "category": "x", "confidence": 7, "patterns": [["x"]]})
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        response = await client.post("/api/v1/policy/reload")
        assert response.status_code == 422, response.text
        assert "classification.yaml" in response.json()["detail"]
        assert "confidence" in response.json()["detail"]
        path.write_text("rules: [unclosed", encoding="utf-8")
        response = await client.post("/api/v1/policy/reload")
        assert response.status_code == 422, response.text
        assert "classification.yaml is not valid YAML" in response.json()["detail"]
        assert await ingest_table(client, "crm.members_v3", "loyalty_card", "cpf") == {
            "loyalty_card": ["PII.LOYALTY_CARD"]
        }


def test_a_policies_dir_without_classification_yaml_does_not_start(tmp_path: Path, database_url: str) -> None:
    directory = policies_copy(tmp_path)
    (directory / "classification.yaml").unlink()
    settings = Settings(
        home=tmp_path / "home", admin_token=ADMIN_TOKEN, log_format="console", policies_dir=directory
    )
    with pytest.raises(FileNotFoundError, match=r"classification\.yaml"):
        create_app(settings, database_url)
