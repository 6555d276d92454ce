"""The lineage service: directions, depth, cycles, as-of answers and node-id parsing."""

from __future__ import annotations

import datetime as dt

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.lineage.service import column_lineage, lineage, resolve_node_id
from tests.factories import at, dataset, run_event, schema
from tests.factories import column_lineage as cll_facet
from tests.lineage.conftest import BQ, JOBS, PG, chain_events, ingest

CUSTOMERS = f"dataset:{PG}:payments.public.customers"
RAW = f"dataset:{BQ}:dw.raw_customers"
DIM = f"dataset:{BQ}:dw.dim_customers"
EXTRACT = f"job:{JOBS}:extract_customers"
MODEL = f"job:{JOBS}:model_customers"


def day(d: int, month: int = 3) -> dt.datetime:
    return dt.datetime(2026, month, d, 12, tzinfo=dt.UTC)


async def test_both_directions_with_edges_in_data_flow_order(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await ingest(client, *chain_events())
    async with engine.connect() as conn:
        graph = await lineage(conn, kind="dataset", namespace=BQ, name="dw.raw_customers")
    assert graph is not None
    assert graph.root == RAW
    assert {n.id for n in graph.nodes} == {CUSTOMERS, EXTRACT, RAW, MODEL, DIM}
    assert {(e.origin, e.destination) for e in graph.edges} == {
        (CUSTOMERS, EXTRACT),
        (EXTRACT, RAW),
        (RAW, MODEL),
        (MODEL, DIM),
    }
    customers = next(n for n in graph.nodes if n.id == CUSTOMERS)
    assert (customers.kind, customers.namespace, customers.name) == (
        "dataset",
        PG,
        "payments.public.customers",
    )


async def test_direction_and_depth_limit_the_walk(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    await ingest(client, *chain_events())
    async with engine.connect() as conn:
        up1 = await lineage(
            conn, kind="dataset", namespace=BQ, name="dw.dim_customers", direction="UPSTREAM", depth=1
        )
        up2 = await lineage(
            conn, kind="dataset", namespace=BQ, name="dw.dim_customers", direction="UPSTREAM", depth=2
        )
        down = await lineage(
            conn, kind="dataset", namespace=BQ, name="dw.dim_customers", direction="DOWNSTREAM"
        )
        job = await lineage(
            conn, kind="job", namespace=JOBS, name="model_customers", direction="DOWNSTREAM", depth=0
        )
    assert up1 is not None
    assert up2 is not None
    assert down is not None
    assert job is not None
    assert {n.id for n in up1.nodes} == {DIM, MODEL, RAW}
    assert {n.id for n in up2.nodes} == {DIM, MODEL, RAW, EXTRACT, CUSTOMERS}
    assert [n.id for n in down.nodes] == [DIM]
    assert down.edges == []
    # A job root always shows its own outputs.
    assert {(e.origin, e.destination) for e in job.edges} == {(MODEL, DIM)}


async def test_cycles_terminate(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    a, b = dataset(BQ, "loop.a"), dataset(BQ, "loop.b")
    await ingest(
        client,
        run_event(when=at(2), job=(JOBS, "a_to_b"), inputs=[a], outputs=[b]),
        run_event(when=at(2), job=(JOBS, "b_to_a"), inputs=[b], outputs=[a]),
    )
    async with engine.connect() as conn:
        graph = await lineage(conn, kind="dataset", namespace=BQ, name="loop.a", depth=20)
    assert graph is not None
    assert len(graph.nodes) == 4
    assert len(graph.edges) == 4


async def test_unknown_root_is_none_and_so_is_a_root_that_did_not_exist_yet(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await ingest(client, *chain_events())
    async with engine.connect() as conn:
        assert await lineage(conn, kind="dataset", namespace=BQ, name="nope") is None
        assert await lineage(conn, kind="job", namespace=JOBS, name="model_customers", as_of=day(1)) is None
        assert await column_lineage(conn, namespace=BQ, dataset="dw.dim_customers", field="nope") is None


async def test_an_edge_replaced_in_april_shows_only_in_the_march_answer(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    old_src, new_src = dataset(PG, "payments.public.cards_v1"), dataset(PG, "payments.public.cards_v2")

    def report(source: str, when: str) -> dict[str, object]:
        out = dataset(
            BQ,
            "dw.card_report",
            schema=schema("pan_hash"),
            columnLineage=cll_facet({"pan_hash": [(PG, source, "pan", "DIRECT", "TRANSFORMATION", True)]}),
        )
        return run_event(when=when, job=(JOBS, "card_report"), inputs=[dataset(PG, source)], outputs=[out])

    # Sent April first: the answers must not depend on arrival order.
    await ingest(client, report("payments.public.cards_v2", at(10, month=4)))
    await ingest(
        client,
        report("payments.public.cards_v1", at(10, month=3)),
        report("payments.public.cards_v1", at(20, month=3)),
    )
    del old_src, new_src
    v1 = f"dataset:{PG}:payments.public.cards_v1"
    v2 = f"dataset:{PG}:payments.public.cards_v2"
    job = f"job:{JOBS}:card_report"
    async with engine.connect() as conn:
        march = await lineage(conn, kind="dataset", namespace=BQ, name="dw.card_report", as_of=day(25))
        april = await lineage(
            conn, kind="dataset", namespace=BQ, name="dw.card_report", as_of=day(15, month=4)
        )
        now = await lineage(conn, kind="dataset", namespace=BQ, name="dw.card_report")
        before = await lineage(conn, kind="dataset", namespace=BQ, name="dw.card_report", as_of=day(1))
        col_march = await column_lineage(
            conn, namespace=BQ, dataset="dw.card_report", field="pan_hash", as_of=day(25)
        )
        col_april = await column_lineage(
            conn, namespace=BQ, dataset="dw.card_report", field="pan_hash", as_of=day(15, month=4)
        )
    assert march is not None
    assert april is not None
    assert now is not None
    assert {(e.origin, e.destination) for e in march.edges} == {
        (v1, job),
        (job, "dataset:bigquery:dw.card_report"),
    }
    assert {(e.origin, e.destination) for e in april.edges} == {
        (v2, job),
        (job, "dataset:bigquery:dw.card_report"),
    }
    assert now.edges == april.edges
    assert v2 not in {n.id for n in march.nodes}
    assert v1 not in {n.id for n in april.nodes}
    assert before is None
    assert col_march is not None
    assert col_april is not None
    assert [(e.origin, e.masking, e.transformation_subtype) for e in col_march.edges] == [
        (f"datasetField:{PG}:payments.public.cards_v1:pan", True, "TRANSFORMATION")
    ]
    assert [e.origin for e in col_april.edges] == [f"datasetField:{PG}:payments.public.cards_v2:pan"]
    assert col_march.edges[0].first_seen == day(10).replace(hour=0)
    assert col_march.edges[0].last_seen == day(20).replace(hour=0)


async def test_column_lineage_follows_fields_through_hops(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await ingest(client, *chain_events())
    async with engine.connect() as conn:
        up = await column_lineage(conn, namespace=BQ, dataset="dw.dim_customers", field="cpf_hash")
        one = await column_lineage(conn, namespace=BQ, dataset="dw.dim_customers", field="cpf_hash", depth=1)
        down = await column_lineage(
            conn, namespace=PG, dataset="payments.public.customers", field="cpf", direction="DOWNSTREAM"
        )
        whole = await column_lineage(conn, namespace=BQ, dataset="dw.raw_customers", direction="BOTH")
    assert up is not None
    assert one is not None
    assert down is not None
    assert whole is not None
    cpf = f"datasetField:{PG}:payments.public.customers:cpf"
    raw_cpf = f"datasetField:{BQ}:dw.raw_customers:cpf"
    dim_cpf = f"datasetField:{BQ}:dw.dim_customers:cpf_hash"
    assert up.root == dim_cpf
    assert {(e.origin, e.destination) for e in up.edges} == {(raw_cpf, dim_cpf), (cpf, raw_cpf)}
    assert all(e.masking for e in up.edges)
    assert {(e.job_namespace, e.job_name) for e in up.edges} == {
        (JOBS, "model_customers"),
        (JOBS, "extract_customers"),
    }
    assert {(e.origin, e.destination) for e in one.edges} == {(raw_cpf, dim_cpf)}
    assert {(e.origin, e.destination) for e in down.edges} == {(cpf, raw_cpf), (raw_cpf, dim_cpf)}
    assert whole.root == RAW
    assert len(whole.edges) == 5  # three columns in from customers, two out to dim_customers
    assert {n.field for n in whole.nodes if n.dataset == "dw.raw_customers"} == {None, "id", "cpf", "email"}


async def test_node_ids_with_colons_in_the_namespace_are_resolved(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await ingest(client, *chain_events())
    async with engine.connect() as conn:
        ds = await resolve_node_id(conn, CUSTOMERS)
        field = await resolve_node_id(conn, f"datasetField:{PG}:payments.public.customers:cpf")
        job = await resolve_node_id(conn, EXTRACT)
        missing = await resolve_node_id(conn, f"dataset:{PG}:nope")
    assert ds is not None
    assert (ds.kind, ds.namespace, ds.name) == ("dataset", PG, "payments.public.customers")
    assert field is not None
    assert (field.namespace, field.name, field.field) == (
        PG,
        "payments.public.customers",
        "cpf",
    )
    assert job is not None
    assert (job.kind, job.namespace, job.name) == ("job", JOBS, "extract_customers")
    assert missing is None
