"""The GraphQL catalog as an engineer uses it: find a dataset, its fields, owners, versions and jobs,
a job's runs page by page, a run, a search, and lineage table by table and column by column."""

from __future__ import annotations

import httpx
import pytest

from tests.graphql.conftest import BQ, JOBS, PG, data_of, gql, ingest, payments_events


@pytest.fixture
async def catalog(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await ingest(client, payments_events())
    return client


async def test_namespaces_are_listed_by_name_in_pages(catalog: httpx.AsyncClient) -> None:
    query = "query($after: String) { namespaces(first: 1, after: $after) { nodes { name firstSeen } pageInfo { hasNextPage endCursor } } }"
    first = (await data_of(catalog, query))["namespaces"]
    assert [n["name"] for n in first["nodes"]] == [JOBS]
    assert first["pageInfo"]["hasNextPage"] is True
    names = [JOBS]
    after = first["pageInfo"]["endCursor"]
    while after:
        page = (await data_of(catalog, query, {"after": after}))["namespaces"]
        names += [n["name"] for n in page["nodes"]]
        after = page["pageInfo"]["endCursor"] if page["pageInfo"]["hasNextPage"] else None
    assert names == sorted([JOBS, BQ, PG])


async def test_a_dataset_with_nested_fields_owners_versions_and_jobs(catalog: httpx.AsyncClient) -> None:
    data = await data_of(
        catalog,
        """query($ns: String!, $name: String!) {
          dataset(namespace: $ns, name: $name) {
            id namespace name sourceUri
            fields { path name type children { path name type } }
            card: field(path: "card") { children { path } }
            number: fields(path: "card") { path }
            owners { name type }
            versions { id fields }
            producers { id name }
            consumers { id name }
            facets
          }
        }""",
        {"ns": PG, "name": "public.payments"},
    )
    ds = data["dataset"]
    assert ds["id"] == f"dataset:{PG}:public.payments"
    assert [(f["path"], f["type"]) for f in ds["fields"]] == [
        ("amount", "NUMERIC"),
        ("card", "STRUCT"),
        ("id", "BIGINT"),
    ]
    card = ds["fields"][1]
    assert card["children"] == [{"path": "card.number", "name": "number", "type": "TEXT"}]
    assert ds["card"]["children"] == [{"path": "card.number"}]
    assert ds["number"] == [{"path": "card.number"}]
    assert ds["owners"] == [{"name": "team:payments", "type": "MAINTAINER"}]
    assert len(ds["versions"]) == 1
    assert ds["versions"][0]["fields"][0]["name"] == "id"
    assert ds["producers"] == []
    assert ds["consumers"] == [{"id": f"job:{JOBS}:payments_dag.load", "name": "payments_dag.load"}]
    assert "schema" in ds["facets"]
    assert "ownership" in ds["facets"]


async def test_an_unknown_dataset_is_null(catalog: httpx.AsyncClient) -> None:
    data = await data_of(catalog, '{ dataset(namespace: "nowhere", name: "x") { id } }')
    assert data == {"dataset": None}


async def test_datasets_filter_by_namespace_and_name_and_page_with_cursors(
    catalog: httpx.AsyncClient,
) -> None:
    query = """query($ns: String, $q: String, $after: String) {
      datasets(namespace: $ns, search: $q, first: 1, after: $after) {
        nodes { namespace name producers { name } }
        pageInfo { hasNextPage endCursor }
      }
    }"""
    page = (await data_of(catalog, query, {"ns": BQ}))["datasets"]
    assert page["nodes"] == [
        {"namespace": BQ, "name": "analytics.payments", "producers": [{"name": "payments_dag.load"}]}
    ]
    assert page["pageInfo"]["hasNextPage"] is True
    page = (await data_of(catalog, query, {"ns": BQ, "after": page["pageInfo"]["endCursor"]}))["datasets"]
    assert [n["name"] for n in page["nodes"]] == ["reports.daily"]
    assert page["pageInfo"]["hasNextPage"] is False

    found = (await data_of(catalog, query, {"q": "PAYMENTS"}))["datasets"]["nodes"]
    assert [(n["namespace"], n["name"]) for n in found] == [(BQ, "analytics.payments")]
    # LIKE wildcards in the search text are literal.
    assert (await data_of(catalog, query, {"q": "%"}))["datasets"]["nodes"] == []


async def test_a_bad_cursor_is_a_clear_error(catalog: httpx.AsyncClient) -> None:
    body = await gql(catalog, '{ datasets(after: "not-a-cursor") { nodes { name } } }')
    assert body["errors"][0]["message"] == "`after` is not a cursor this API returned"
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_job_with_inputs_outputs_and_runs_page_by_page(catalog: httpx.AsyncClient) -> None:
    query = """query($after: String) {
      job(namespace: "airflow-payments", name: "payments_dag.load") {
        id inputs { name } outputs { name owners { name } }
        runs(first: 1, after: $after) {
          nodes { id state startedAt endedAt job { name } }
          pageInfo { hasNextPage endCursor }
        }
      }
    }"""
    job = (await data_of(catalog, query))["job"]
    assert job["inputs"] == [{"name": "public.payments"}]
    assert job["outputs"] == [
        {"name": "analytics.payments", "owners": [{"name": "team:analytics"}, {"name": "user:ana"}]}
    ]
    newest = job["runs"]["nodes"]
    assert [r["id"] for r in newest] == ["22222222-2222-4222-8222-222222222222"]
    assert job["runs"]["pageInfo"]["hasNextPage"] is True
    older = (await data_of(catalog, query, {"after": job["runs"]["pageInfo"]["endCursor"]}))["job"]["runs"]
    assert older["nodes"] == [
        {
            "id": "11111111-1111-4111-8111-111111111111",
            "state": "COMPLETE",
            "startedAt": "2026-03-02T01:00:00+00:00",
            "endedAt": "2026-03-02T02:00:00+00:00",
            "job": {"name": "payments_dag.load"},
        }
    ]
    assert older["pageInfo"]["hasNextPage"] is False


async def test_a_run_by_id(catalog: httpx.AsyncClient) -> None:
    data = await data_of(
        catalog,
        '{ run(id: "11111111-1111-4111-8111-111111111111") { id state job { id } } '
        'missing: run(id: "33333333-3333-4333-8333-333333333333") { id } }',
    )
    assert data["run"] == {
        "id": "11111111-1111-4111-8111-111111111111",
        "state": "COMPLETE",
        "job": {"id": f"job:{JOBS}:payments_dag.load"},
    }
    assert data["missing"] is None


async def test_search_across_datasets_jobs_and_fields(catalog: httpx.AsyncClient) -> None:
    data = await data_of(
        catalog,
        """{ search(query: "daily") {
              __typename
              ... on Dataset { id }
              ... on Job { id }
              ... on DatasetField { path dataset { id } }
        } }""",
    )
    assert data["search"] == [
        {"__typename": "Dataset", "id": f"dataset:{BQ}:reports.daily"},
        {"__typename": "Job", "id": f"job:{JOBS}:reports_dag.daily"},
    ]
    fields = await data_of(
        catalog, '{ search(query: "card") { ... on DatasetField { path dataset { name } } } }'
    )
    assert {"path": "card", "dataset": {"name": "public.payments"}} in fields["search"]
    assert {"path": "card_hash", "dataset": {"name": "analytics.payments"}} in fields["search"]


async def test_lineage_walks_datasets_and_jobs(catalog: httpx.AsyncClient) -> None:
    data = await data_of(
        catalog,
        """query($node: NodeInput!) {
          lineage(node: $node, direction: UPSTREAM, depth: 5) {
            root
            nodes { id kind namespace name dataset { owners { name } } job { name } }
            edges { origin destination firstSeen lastSeen }
          }
        }""",
        {"node": {"kind": "DATASET", "namespace": BQ, "name": "reports.daily"}},
    )
    graph = data["lineage"]
    assert graph["root"] == f"dataset:{BQ}:reports.daily"
    ids = {n["id"] for n in graph["nodes"]}
    assert ids == {
        f"dataset:{BQ}:reports.daily",
        f"job:{JOBS}:reports_dag.daily",
        f"dataset:{BQ}:analytics.payments",
        f"job:{JOBS}:payments_dag.load",
        f"dataset:{PG}:public.payments",
    }
    by_id = {n["id"]: n for n in graph["nodes"]}
    assert by_id[f"dataset:{PG}:public.payments"]["dataset"] == {"owners": [{"name": "team:payments"}]}
    assert by_id[f"job:{JOBS}:reports_dag.daily"]["job"] == {"name": "reports_dag.daily"}
    assert by_id[f"job:{JOBS}:reports_dag.daily"]["dataset"] is None
    edges = {(e["origin"], e["destination"]) for e in graph["edges"]}
    assert (f"dataset:{PG}:public.payments", f"job:{JOBS}:payments_dag.load") in edges
    assert (f"job:{JOBS}:reports_dag.daily", f"dataset:{BQ}:reports.daily") in edges

    downstream = await data_of(
        catalog,
        '{ lineage(node: {kind: DATASET, namespace: "bigquery", name: "reports.daily"}, direction: DOWNSTREAM) { nodes { id } } }',
    )
    assert [n["id"] for n in downstream["lineage"]["nodes"]] == [f"dataset:{BQ}:reports.daily"]

    before = await data_of(
        catalog,
        '{ lineage(node: {kind: JOB, namespace: "airflow-payments", name: "reports_dag.daily"}, asOf: "2026-03-01T00:00:00Z") { root } }',
    )
    assert before == {"lineage": None}  # the job did not exist yet


async def test_column_lineage_with_transformations(catalog: httpx.AsyncClient) -> None:
    data = await data_of(
        catalog,
        """{ columnLineage(namespace: "bigquery", dataset: "reports.daily", field: "total", depth: 5) {
              root
              nodes { id namespace dataset field }
              edges { origin destination transformationType transformationSubtype masking jobName firstSeen lastSeen }
        } }""",
    )
    graph = data["columnLineage"]
    assert graph["root"] == f"datasetField:{BQ}:reports.daily:total"
    edges = {(e["origin"], e["destination"]): e for e in graph["edges"]}
    hop1 = edges[(f"datasetField:{BQ}:analytics.payments:amount", f"datasetField:{BQ}:reports.daily:total")]
    assert (hop1["transformationType"], hop1["transformationSubtype"], hop1["masking"]) == (
        "DIRECT",
        "AGGREGATION",
        False,
    )
    assert hop1["jobName"] == "reports_dag.daily"
    assert (
        f"datasetField:{PG}:public.payments:amount",
        f"datasetField:{BQ}:analytics.payments:amount",
    ) in edges

    masked = await data_of(
        catalog,
        '{ columnLineage(namespace: "bigquery", dataset: "analytics.payments", field: "card_hash") { edges { origin masking transformationSubtype } } }',
    )
    assert masked["columnLineage"]["edges"] == [
        {
            "origin": f"datasetField:{PG}:public.payments:card.number",
            "masking": True,
            "transformationSubtype": "TRANSFORMATION",
        }
    ]


async def test_lineage_depth_is_capped(catalog: httpx.AsyncClient) -> None:
    body = await gql(
        catalog,
        '{ lineage(node: {kind: DATASET, namespace: "bigquery", name: "reports.daily"}, depth: 1000) { root } }',
    )
    assert body["errors"][0]["message"] == "`depth` must be between 0 and 20; got 1000"
