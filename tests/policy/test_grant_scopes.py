"""What a grant covers (catalog/policy/scopes.py): a namespace grant covers that namespace exactly (not
one it is a prefix of), pattern globs are segment-aware (`*` never crosses `/` or `:`, `**` does), and
the cross-product findings rule judges a flow granted exactly when the grantee's read is allowed."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.policy.scopes import DatasetRef, GrantScope
from tests.factories import dataset, run_event, schema
from tests.findings.helpers import PAYMENTS_DB, findings, ingest, ownership, source
from tests.keys import make_key
from tests.policy.test_grants import TLS, grant_body

LAKE = "s3://payments-lake"
RESTRICTED_LAKE = "s3://payments-lake/restricted"
LONGER_PORT = "postgres://payments-db-1.internal:54321"
SUB_DATABASE = "postgres://payments-db-1.internal:5432/restricted"

# (namespace, dataset): every one is payments', read by fraud's job
DATASETS = [
    (PAYMENTS_DB, "payments.transactions"),
    (LONGER_PORT, "payments.transactions"),
    (SUB_DATABASE, "payments.secrets"),
    (LAKE, "daily"),
    (LAKE, "daily/2026"),
    (RESTRICTED_LAKE, "daily"),
]


@pytest.mark.parametrize(
    ("grant", "ref", "covers"),
    [
        (GrantScope("namespace", LAKE, None), DatasetRef(LAKE, "x"), True),
        (GrantScope("namespace", LAKE, None), DatasetRef(LAKE, "restricted/x"), True),
        (GrantScope("namespace", LAKE, None), DatasetRef(RESTRICTED_LAKE, "x"), False),
        (GrantScope("namespace", LAKE, None), DatasetRef(LAKE, None), True),
        (GrantScope("namespace", LAKE, None), DatasetRef(RESTRICTED_LAKE, None), False),
        (GrantScope("namespace", PAYMENTS_DB, None), DatasetRef(LONGER_PORT, "t"), False),
        (GrantScope("namespace", PAYMENTS_DB, None), DatasetRef(SUB_DATABASE, "t"), False),
        (GrantScope("dataset", LAKE, "x"), DatasetRef(LAKE, "x"), True),
        (GrantScope("dataset", LAKE, "x"), DatasetRef(LAKE, "x/y"), False),
        (GrantScope("dataset", LAKE, "x"), DatasetRef(LAKE, None), False),
        (GrantScope("dataset", "s3://a", "b/c"), DatasetRef("s3://a/b", "c"), False),
        (GrantScope("dataset", "ns", "a*"), DatasetRef("ns", "ab"), False),  # a dataset grant is literal
        (
            GrantScope("pattern", "postgres://payments-db-1.internal:*", "payments.*"),
            DatasetRef(PAYMENTS_DB, "payments.t"),
            True,
        ),
        (
            GrantScope("pattern", "postgres://payments-db-1.internal:*", "payments.*"),
            DatasetRef(LONGER_PORT, "payments.t"),
            True,
        ),
        (
            GrantScope("pattern", "postgres://payments-db-1.internal:*", "payments.*"),
            DatasetRef(SUB_DATABASE, "payments.t"),
            False,
        ),
        (
            GrantScope("pattern", "postgres://payments-db-1.internal:**", None),
            DatasetRef(SUB_DATABASE, "payments.t"),
            True,
        ),
        (
            GrantScope("pattern", "postgres://payments-db-1.internal:5432", "payments.*"),
            DatasetRef(LONGER_PORT, "payments.t"),
            False,
        ),
        (
            GrantScope("pattern", "postgres://payments-db-1.internal:543?", None),
            DatasetRef(LONGER_PORT, "t"),
            False,
        ),
        (
            GrantScope("pattern", "postgres://payments-db-1.internal:543?", None),
            DatasetRef(PAYMENTS_DB, None),
            True,
        ),
        (
            GrantScope("pattern", "postgres://payments-db-1.internal:543?", None),
            DatasetRef("postgres://payments-db-1.internal:5439", None),
            True,
        ),
        (GrantScope("pattern", "s3://*", None), DatasetRef(LAKE, "x"), True),
        (GrantScope("pattern", "s3://*", None), DatasetRef(RESTRICTED_LAKE, "x"), False),
        (GrantScope("pattern", "s3://payments-*", "*"), DatasetRef(LAKE, "daily"), True),
        (GrantScope("pattern", "s3://payments-*", "*"), DatasetRef(LAKE, "daily/2026"), False),
        (GrantScope("pattern", "s3://payments-*", "*"), DatasetRef(LAKE, None), False),
        (GrantScope("pattern", "s3://payments-*", "**"), DatasetRef(LAKE, None), True),
        (GrantScope("pattern", "s3://payments-*", "daily/**"), DatasetRef(LAKE, "daily/2026/01"), True),
        (GrantScope("pattern", "lake", None), DatasetRef("lake", "x"), True),
        (GrantScope("pattern", "lake", None), DatasetRef("lake/restricted", "x"), False),
        (GrantScope("pattern", "lake", None), DatasetRef("lakehouse", "x"), False),
        (GrantScope("pattern", "db.[a]", "%_"), DatasetRef("db.[a]", "%_"), True),  # only * ? ** are special
        (GrantScope("pattern", "db.[a]", "%_"), DatasetRef("db.a", "xy"), False),
    ],
)
def test_what_a_grant_covers(grant: GrantScope, ref: DatasetRef, covers: bool) -> None:
    assert grant.covers(ref) is covers


def _url(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/datasets/{quote(name, safe='')}"


async def _load(client: httpx.AsyncClient) -> None:
    owned = [
        dataset(
            ns,
            name,
            dataSource=source(TLS),
            schema=schema("id", ("amount", "NUMERIC")),
            ownership=ownership("product:payments"),
        )
        for ns, name in DATASETS
    ]
    await ingest(client, run_event(job=("airflow-payments", "payments_dag.load"), outputs=owned))
    await ingest(
        client,
        run_event(job=("airflow-fraud", "fraud_dag.read"), inputs=[dataset(ns, n) for ns, n in DATASETS]),
    )


async def _open_crossings(client: httpx.AsyncClient) -> set[tuple[str, str]]:
    rows = await findings(client, "cross-product-access", status="open")
    return {(r["evidence"]["namespace"], r["evidence"]["dataset"]) for r in rows}


GRANTS: list[tuple[dict[str, Any], set[tuple[str, str]]]] = [
    ({"scope": "namespace", "namespace": LAKE}, {(LAKE, "daily"), (LAKE, "daily/2026")}),
    ({"scope": "namespace", "namespace": PAYMENTS_DB}, {(PAYMENTS_DB, "payments.transactions")}),
    (
        {"scope": "pattern", "namespace": "postgres://payments-db-1.internal:*", "name": "payments.*"},
        {(PAYMENTS_DB, "payments.transactions"), (LONGER_PORT, "payments.transactions")},
    ),
    (
        {"scope": "pattern", "namespace": "postgres://payments-db-1.internal:**"},
        {
            (PAYMENTS_DB, "payments.transactions"),
            (LONGER_PORT, "payments.transactions"),
            (SUB_DATABASE, "payments.secrets"),
        },
    ),
    ({"scope": "pattern", "namespace": "s3://payments-*", "name": "*"}, {(LAKE, "daily")}),
]


@pytest.mark.parametrize(("grant", "opened"), GRANTS, ids=[str(g) for g, _ in GRANTS])
async def test_a_grant_opens_exactly_what_it_covers_for_reads_and_findings_alike(
    client: httpx.AsyncClient, engine: AsyncEngine, grant: dict[str, Any], opened: set[tuple[str, str]]
) -> None:
    await _load(client)
    steward = await make_key(engine, "steward", "payments")
    fraud_engineer = await make_key(engine, "engineer", "fraud")
    everything = set(DATASETS)
    assert await _open_crossings(client) == everything  # every dataset is payments', no grant yet

    body = grant_body(**{"name": None, **grant})
    created = await client.post("/api/v1/grants", json=body, headers=steward.headers)
    assert created.status_code == 201, created.text

    readable = set()
    for ns, name in DATASETS:
        read = await client.get(_url(ns, name), headers=fraud_engineer.headers)
        assert read.status_code in (200, 403), read.text
        if read.status_code == 200:
            readable.add((ns, name))
    assert readable == opened
    # the findings rule uses the same matcher: a flow is granted exactly when the read is allowed
    assert await _open_crossings(client) == everything - opened

    # a namespace page: a grant on every dataset of a product's namespace opens it; and whatever page
    # shows, a dataset's columns show only when the grant covers that dataset
    for ns in sorted({ns for ns, _ in DATASETS}):
        page = await client.get(
            f"/api/v1/namespaces/{quote(ns, safe='')}/datasets", headers=fraud_engineer.headers
        )
        whole = GrantScope(grant["scope"], grant["namespace"], grant.get("name")).covers(DatasetRef(ns, None))
        if whole:
            assert page.status_code == 200, (ns, page.text)
        if page.status_code == 200:
            for d in page.json()["datasets"]:
                assert bool(d["fields"]) == ((ns, d["name"]) in opened), (ns, d)
        else:
            assert page.status_code == 403, (ns, page.text)
