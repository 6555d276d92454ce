"""A masked-columns-only grantee sees no facet detail of a redacted column (catalog/policy/masking.py
`redact_facets`), whatever the facet: every facet kind of the real corpus (dataset, input and output
facets, custom ones included) plus the standard column-naming ones, in the dataset read, its versions,
its lineage node and GraphQL `facets` alike. A redacted column's name shows only where the schema lists
it with `masked: true`."""

from __future__ import annotations

import copy
import json
import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.policy.masking import COLUMN_FACET_REDACTORS, COLUMN_FREE_FACETS, redact_facets
from tests.corpus import corpus_id, event_files
from tests.factories import PRODUCER, column_lineage, dataset, run_event, schema
from tests.findings.helpers import PAYMENTS_DB, ingest, ownership, source
from tests.keys import Key, make_key
from tests.policy.test_grants import TLS, grant_body
from tests.policy.test_graphql_authz import gql

TRANSACTIONS = "payments.transactions"
LEDGER = "payments.ledger"
NODE = f"dataset:{PAYMENTS_DB}:{TRANSACTIONS}"


def _events(path: Any) -> list[dict[str, Any]]:
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return [e for e in (loaded if isinstance(loaded, list) else [loaded]) if isinstance(e, dict)]


def _corpus_datasets() -> list[tuple[str, dict[str, Any]]]:
    """(corpus id, dataset) of every input, output and DatasetEvent dataset in the corpus."""
    out = []
    for path in event_files():
        for event in _events(path):
            items = [*(event.get("inputs") or []), *(event.get("outputs") or []), event.get("dataset")]
            out += [(corpus_id(path), d) for d in items if isinstance(d, dict)]
    return out


def corpus_facets() -> dict[str, dict[str, Any]]:
    """The first value of every facet name the corpus carries on a dataset (facets, inputFacets,
    outputFacets)."""
    seen: dict[str, dict[str, Any]] = {}
    for _, d in _corpus_datasets():
        for group in ("facets", "inputFacets", "outputFacets"):
            facets = d.get(group)
            if isinstance(facets, dict):
                for name, value in facets.items():
                    if isinstance(value, dict):
                        seen.setdefault(name, value)
    return seen


def words(value: Any, name: str, *, keys: bool = True) -> bool:
    """Does `name` occur in `value` as a whole word of a string (or of a key, unless `keys` is False)?"""
    pattern = re.compile(rf"(?<![\w$]){re.escape(name)}(?![\w$])")
    if isinstance(value, str):
        return pattern.search(value) is not None
    if isinstance(value, dict):
        return any((keys and words(k, name)) or words(v, name, keys=keys) for k, v in value.items())
    if isinstance(value, list):
        return any(words(v, name, keys=keys) for v in value)
    return False


def without_masked_entries(facets: dict[str, Any]) -> dict[str, Any]:
    """The facets without the schema's `masked: true` entries (the one place a redacted name shows)."""

    def strip(fields: Any) -> Any:
        if not isinstance(fields, list):
            return fields
        return [
            {**f, "fields": strip(f.get("fields"))} if isinstance(f, dict) and "fields" in f else f
            for f in fields
            if not (isinstance(f, dict) and f.get("masked") is True)
        ]

    out = dict(facets)
    if isinstance(out.get("schema"), dict):
        out["schema"] = {**out["schema"], "fields": strip(out["schema"].get("fields"))}
    return out


def _schema_names(facets: dict[str, Any]) -> set[str]:
    schema_facet = facets.get("schema")
    fields = schema_facet.get("fields") if isinstance(schema_facet, dict) else None
    return {
        f["name"]
        for f in fields or []
        if isinstance(f, dict) and isinstance(f.get("name"), str) and f["name"]
    }


CORPUS_WITH_COLUMNS = [
    (cid, d)
    for cid, d in _corpus_datasets()
    if isinstance(d.get("facets"), dict) and _schema_names(d["facets"]) and len(d["facets"]) > 1
]


def test_the_corpus_has_facets_of_every_handled_kind() -> None:
    """The corpus is what this file tests against: it must keep carrying the facets the issue named."""
    seen = corpus_facets()
    assert {"schema", "columnLineage", "dataQualityAssertions", "dataQualityMetrics", "documentation"} <= set(
        seen
    )
    assert any(name not in COLUMN_FREE_FACETS and name not in COLUMN_FACET_REDACTORS for name in seen)


@pytest.mark.parametrize(
    ("cid", "item"), CORPUS_WITH_COLUMNS, ids=[f"{c}:{d.get('name')}" for c, d in CORPUS_WITH_COLUMNS]
)
def test_no_corpus_facet_names_a_redacted_column(cid: str, item: dict[str, Any]) -> None:
    """Each column of the dataset redacted in turn: after redaction no facet (dataset, input or output;
    the schema's masked entries aside) names it in a string (keys are facets' own member names: a
    column called `description` is no leak in a schema's `description` key), nor keys a map by it,
    and the column-free facets that named none pass unchanged."""
    for group in ("facets", "inputFacets", "outputFacets"):
        facets = item.get(group)
        if not isinstance(facets, dict):
            continue
        for column in sorted(_schema_names(item["facets"])):
            shown = redact_facets(facets, {column})
            assert not words(without_masked_entries(shown), column, keys=False), (cid, group, column, shown)
            for name in COLUMN_FACET_REDACTORS:
                keyed = (shown.get(name) or {}).get(
                    "fields" if name != "dataQualityMetrics" else "columnMetrics"
                )
                assert column not in (keyed or {}), (cid, group, column, name)
            for name, value in facets.items():
                if name in COLUMN_FREE_FACETS and isinstance(value, dict) and not words(value, column):
                    assert shown[name] == value


def _facets_naming_cpf() -> dict[str, Any]:
    """payments.transactions' facets: every facet name of the corpus (and the standard column-naming
    ones it lacks), each naming `cpf` where its kind names columns; the column-free ones as the corpus
    sent them, and `documentation` describing cpf in free text."""
    facets: dict[str, Any] = {name: copy.deepcopy(value) for name, value in corpus_facets().items()}
    cpf_doc = {"name": "cpf", "type": "STRING", "description": "customer's CPF", "tags": [{"key": "PII.CPF"}]}
    facets["schema"] = schema(
        "id",
        cpf_doc,
        {"name": "amount", "type": "NUMERIC", "description": "settled amount"},
        {"name": "payer_key", "type": "STRING", "description": "sha256 of the payer's cpf"},
    )
    facets["dataSource"] = source(TLS)
    facets["ownership"] = ownership("product:payments")
    facets["documentation"] = {
        **facets["documentation"],
        "description": "one row per payment, with the payer's cpf",
    }
    facets["columnLineage"] = column_lineage(
        {
            "cpf": [(PAYMENTS_DB, LEDGER, "document_number", "DIRECT", "IDENTITY", False)],
            "amount": [(PAYMENTS_DB, LEDGER, "value", "DIRECT", "IDENTITY", False)],
        }
    )
    facets["dataQualityAssertions"] = {
        **facets["dataQualityAssertions"],
        "assertions": [
            {"assertion": "not_null", "success": False, "column": "cpf"},
            {"assertion": "is_positive", "success": True, "column": "amount"},
        ],
    }
    facets["dataQualityMetrics"] = {
        **facets["dataQualityMetrics"],
        "rowCount": 10,
        "columnMetrics": {"cpf": {"nullCount": 3, "distinctCount": 7}, "amount": {"nullCount": 0}},
    }
    facets["tags"] = {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-0/TagsDatasetFacet.json",
        "tags": [
            {"key": "PII.CPF", "value": "true", "source": "DBT", "field": "cpf"},
            {"key": "finance", "value": "true", "source": "DBT", "field": "amount"},
            {"key": "tier", "value": "gold", "source": "DBT"},
        ],
    }
    facets["lineage"] = {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-0/LineageDatasetFacet.json",
        "inputs": [{"namespace": PAYMENTS_DB, "name": LEDGER, "field": "cpf"}],
        "fields": {
            "cpf": {"inputs": [{"namespace": PAYMENTS_DB, "name": LEDGER, "field": "document_number"}]}
        },
    }
    facets["spark.logicalPlan"] = {"_producer": PRODUCER, "plan": "Project [id#1, cpf#2, amount#3]"}
    return facets


async def _views(client: httpx.AsyncClient, key: Key) -> dict[str, dict[str, Any]]:
    """The dataset's facets in every read that carries them."""
    ns, name = quote(PAYMENTS_DB, safe=""), quote(TRANSACTIONS, safe="")
    base = f"/api/v1/namespaces/{ns}/datasets/{name}"
    read = await client.get(base, headers=key.headers)
    versions = await client.get(f"{base}/versions", headers=key.headers)
    walked = await client.get("/api/v1/lineage", params={"nodeId": NODE}, headers=key.headers)
    for response in (read, versions, walked):
        assert response.status_code == 200, response.text
    node = next(n for n in walked.json()["graph"] if n["id"] == NODE)
    graphql = await gql(
        client,
        key,
        "query($ns: String!, $n: String!) { dataset(namespace: $ns, name: $n) { facets } }",
        {"ns": PAYMENTS_DB, "n": TRANSACTIONS},
    )
    assert "errors" not in graphql, graphql
    views = {
        "rest dataset": read.json()["facets"],
        "lineage node": node["data"]["facets"],
        "graphql": graphql["data"]["dataset"]["facets"],
    }
    for i, version in enumerate(versions.json()["versions"]):
        views[f"version {i}"] = version.get("facets") or {}
    return views


async def test_a_masked_only_grantee_sees_no_facet_detail_of_the_redacted_column(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    facets = _facets_naming_cpf()
    await ingest(
        client,
        run_event(
            job=("airflow-payments", "payments_dag.settle"),
            inputs=[dataset(PAYMENTS_DB, LEDGER, schema=schema("document_number", ("value", "NUMERIC")))],
            outputs=[{"namespace": PAYMENTS_DB, "name": TRANSACTIONS, "facets": facets}],
        ),
    )
    steward = await make_key(engine, "steward", "payments")
    owner = await make_key(engine, "engineer", "payments")
    fraud = await make_key(engine, "engineer", "fraud")

    # the owner sees every facet as sent, cpf's entries included
    for where, seen in (await _views(client, owner)).items():
        if where.startswith("version"):
            continue
        assert set(seen) == set(facets), where
        assert seen["tags"] == facets["tags"], where
        assert seen["documentation"] == facets["documentation"], where

    created = await client.post("/api/v1/grants", json=grant_body(masked_only=True), headers=steward.headers)
    assert created.status_code == 201, created.text
    views = await _views(client, fraud)
    for where, seen in views.items():
        # nothing names cpf but the schema's masked entry
        assert not words(without_masked_entries(seen), "cpf"), (where, seen)
        assert "customer's CPF" not in json.dumps(seen), where
        if where.startswith("version"):
            continue
        assert {"name": "cpf", "masked": True} in seen["schema"]["fields"], where
        # column-naming facets keep what they say of the other columns
        assert [t.get("field") for t in seen["tags"]["tags"]] == ["amount", None], where
        assert [a["column"] for a in seen["dataQualityAssertions"]["assertions"]] == ["amount"], where
        assert set(seen["dataQualityMetrics"]["columnMetrics"]) == {"amount"}, where
        assert seen["dataQualityMetrics"]["rowCount"] == 10, where
        assert set(seen["columnLineage"]["fields"]) == {"amount"}, where
        assert seen["lineage"]["fields"] == {}, where
        assert seen["lineage"]["inputs"] == [], where
        # column-free facets pass as sent; custom ones (unknown shape) and prose naming cpf do not
        for name in facets:
            if name in COLUMN_FREE_FACETS and name != "documentation":
                assert seen[name] == facets[name], (where, name)
            elif name not in COLUMN_FREE_FACETS and name not in COLUMN_FACET_REDACTORS and name != "schema":
                assert name not in seen, (where, name)
        assert "documentation" not in seen, where

    # field-level: another column's description naming cpf is left out, in REST and GraphQL alike
    ns, name = quote(PAYMENTS_DB, safe=""), quote(TRANSACTIONS, safe="")
    fields = (await client.get(f"/api/v1/namespaces/{ns}/datasets/{name}", headers=fraud.headers)).json()[
        "fields"
    ]
    described = {f["name"]: f["description"] for f in fields}
    assert described == {"id": None, "cpf": None, "amount": "settled amount", "payer_key": None}
    graphql = await gql(
        client,
        fraud,
        "query($ns: String!, $n: String!) { dataset(namespace: $ns, name: $n) { fields { name description } } }",
        {"ns": PAYMENTS_DB, "n": TRANSACTIONS},
    )
    assert {f["name"]: f["description"] for f in graphql["data"]["dataset"]["fields"]} == described
