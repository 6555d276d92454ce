"""Propagation on small graphs built straight in the tables: cycles, masking, rejects, tie-breaks, long chains,
and incremental maintenance giving exactly the closure of a from-scratch run (and of an independent
breadth-first oracle), whatever the order, with every stored path a real path back to a seed."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.classification.decisions import record_decision
from catalog.classification.propagate import propagate_from, relax
from catalog.classification.reads import propagated_paths
from catalog.db.engine import driver_connection, raw_connection, raw_transaction

CPF = "PII.CPF"


class Graph:
    """Datasets ns/ds<i>, each with one field `f`; field ids by i."""

    def __init__(self, conn: asyncpg.Connection[Any], sa: AsyncConnection | None = None) -> None:
        self.conn = conn
        self.sa = sa  # the SQLAlchemy connection over `conn`, for the services that take one
        self.fields: dict[int, int] = {}
        self.datasets: dict[int, int] = {}
        self.index: dict[int, int] = {}  # field id -> i
        self.edges: set[tuple[int, int, bool]] = set()
        self.seeds: set[int] = set()

    async def nodes(self, *numbers: int) -> None:
        ns = await self.conn.fetchval(
            "INSERT INTO namespaces (name, first_seen, last_seen) VALUES ('ns', now(), now()) "
            "ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id"
        )
        for i in numbers:
            ds = await self.conn.fetchval(
                "INSERT INTO datasets (namespace_id, name, first_seen, last_seen) VALUES ($1, $2, now(), now()) "
                "RETURNING id",
                ns,
                f"ds{i}",
            )
            field = await self.conn.fetchval(
                "INSERT INTO dataset_fields (dataset_id, path, first_seen, last_seen) VALUES ($1, 'f', now(), now()) "
                "RETURNING id",
                ds,
            )
            self.datasets[i], self.fields[i], self.index[field] = ds, field, i

    async def edge(self, source: int, target: int, *, masking: bool = False) -> None:
        await self.conn.execute(
            "INSERT INTO column_edges (target_dataset_id, target_field_id, source_dataset_id, source_field_id, "
            "transformation_type, transformation_subtype, masking, first_seen, last_seen) "
            "VALUES ($1, $2, $3, $4, 'DIRECT', 'IDENTITY', $5, now(), now())",
            self.datasets[target],
            self.fields[target],
            self.datasets[source],
            self.fields[source],
            masking,
        )
        self.edges.add((source, target, masking))
        await relax(self.conn, [self.fields[target]])  # a new edge can only add states

    async def detect(self, i: int, tag: str = CPF, *, present: bool = True) -> None:
        if present:
            await self.conn.execute(
                "INSERT INTO classifications (dataset_id, field_id, tag, source, category, confidence, rule) "
                "VALUES ($1, $2, $3, 'detected', 'personal_identifier', 0.97, 'cpf')",
                self.datasets[i],
                self.fields[i],
                tag,
            )
            self.seeds.add(i)
        else:
            self.seeds.discard(i)
            await self.conn.execute(
                "DELETE FROM classifications WHERE source = 'detected' AND field_id = $1 AND tag = $2",
                self.fields[i],
                tag,
            )
        await propagate_from(self.conn, [self.fields[i]])  # what ingest does for a changed detection

    async def rows(self) -> dict[tuple[int, str, bool], tuple[int, list[int]]]:
        """(i, tag, masked) -> (depth, path as dataset numbers) of every propagated row."""
        rows = await self.conn.fetch(
            "SELECT field_id, tag, masked, depth::int AS depth, via_field_id, via_masked, source "
            "FROM classifications WHERE source = 'propagated' ORDER BY id"
        )
        paths = await propagated_paths(self.conn, rows)
        out = {}
        for k, r in enumerate(rows):
            out[(self.index[r["field_id"]], r["tag"], r["masked"])] = (
                r["depth"],
                [self.index[field] for field, _ in paths[k]],
            )
        return out

    async def from_scratch(self) -> dict[tuple[int, str, bool], tuple[int, list[int]]]:
        await self.conn.execute("DELETE FROM classifications WHERE source = 'propagated'")
        await propagate_from(self.conn, self.fields.values())
        return await self.rows()

    def closure(self, rejected: frozenset[int] = frozenset()) -> set[tuple[int, str, bool]]:
        """The states that must hold a CPF row, by a breadth-first walk in Python (the oracle): reachable
        from a seed over one or more edges (not self-loops, not into a rejected field), masked once any
        edge masked; a seed's own unmasked state only when another seed feeds it unmasked directly."""
        seen: set[tuple[int, bool]] = set()
        frontier = [(s, False) for s in self.seeds if s not in rejected]
        walked: set[tuple[int, bool]] = set(frontier)
        while frontier:
            nxt = []
            for field, masked in frontier:
                for source, target, masks in self.edges:
                    if source != field or target == source or target in rejected:
                        continue
                    state = (target, masked or masks)
                    seen.add(state)
                    if state not in walked and not (target in self.seeds and not state[1]):
                        walked.add(state)
                        nxt.append(state)
            frontier = nxt
        direct = {t for s, t, m in self.edges if s in self.seeds and t in self.seeds and s != t and not m}
        return {
            (f, CPF, m) for f, m in seen if not (f in self.seeds and not m and f not in direct - rejected)
        }


def assert_paths_are_real(graph: Graph, rows: dict[tuple[int, str, bool], tuple[int, list[int]]]) -> None:
    """Every stored path starts at a seed, has `depth` hops, each an edge that exists, and is masked at the
    end exactly when one of its edges masks."""
    for (field, _, masked), (depth, path) in rows.items():
        assert len(path) == depth + 1, (field, depth, path)
        assert path[0] in graph.seeds
        assert path[-1] == field
        options = [{m for s, t, m in graph.edges if (s, t) == hop} for hop in itertools.pairwise(path)]
        assert all(options), (field, path)  # every hop is an edge
        if masked:
            assert any(True in o for o in options), (field, path)
        else:
            assert all(False in o for o in options), (field, path)


@pytest.fixture
async def graph(engine: AsyncEngine) -> AsyncIterator[Graph]:
    async with engine.connect() as sa, sa.begin():
        yield Graph(await driver_connection(sa), sa)


async def test_a_cycle_terminates_and_a_row_keeps_the_path_it_was_found_by(graph: Graph) -> None:
    await graph.nodes(1, 2, 3)
    await graph.detect(1)
    for source, target in [(1, 2), (2, 3), (3, 1), (1, 3)]:
        await graph.edge(source, target)
    # the seed itself gets no row: only another seed feeding it directly would give it one; the later
    # shortcut 1 -> 3 does not rewrite 3's row (the closure is what must be exact, not the shortest path)
    assert await graph.rows() == {(2, CPF, False): (1, [1, 2]), (3, CPF, False): (2, [1, 2, 3])}
    # found in one pass, the same states come by their shortest paths
    assert await graph.from_scratch() == {(2, CPF, False): (1, [1, 2]), (3, CPF, False): (1, [1, 3])}


async def test_a_seed_fed_by_another_seed_records_it(graph: Graph) -> None:
    await graph.nodes(1, 2, 3)
    await graph.detect(1)
    await graph.edge(1, 2)
    await graph.edge(2, 3)
    await graph.detect(2)  # its downstream now comes from it: paths are re-derived, depths stay exact
    assert await graph.rows() == {(2, CPF, False): (1, [1, 2]), (3, CPF, False): (1, [2, 3])}
    await graph.detect(2, present=False)
    assert await graph.rows() == {(2, CPF, False): (1, [1, 2]), (3, CPF, False): (2, [1, 2, 3])}


async def test_masking_makes_a_separate_state_and_sticks_downstream(graph: Graph) -> None:
    await graph.nodes(1, 2, 3)
    await graph.detect(1)
    await graph.edge(1, 2, masking=True)
    await graph.edge(2, 3)
    await graph.edge(1, 3)
    assert await graph.rows() == {
        (2, CPF, True): (1, [1, 2]),
        (3, CPF, True): (2, [1, 2, 3]),
        (3, CPF, False): (1, [1, 3]),
    }


async def test_a_reject_is_a_barrier_and_ties_break_by_names(graph: Graph) -> None:
    await graph.nodes(1, 2, 3, 4)
    await graph.detect(1)
    for source, target in [(1, 3), (3, 4), (1, 2), (2, 4)]:
        await graph.edge(source, target)
    assert (await graph.rows())[(4, CPF, False)] == (2, [1, 3, 4])  # found first, kept
    assert (await graph.from_scratch())[(4, CPF, False)] == (2, [1, 2, 4])  # "ns/ds2#f" < "ns/ds3#f"

    async def reject(i: int) -> None:
        assert graph.sa is not None
        await record_decision(
            graph.sa,
            namespace="ns",
            dataset=f"ds{i}",
            field="f",
            tag=CPF,
            action="reject",
            reason="no",
            author="t",
        )

    await reject(2)  # 4's row came through 2: it is re-derived through 3
    rows = await graph.rows()
    assert rows == {(3, CPF, False): (1, [1, 3]), (4, CPF, False): (2, [1, 3, 4])}
    assert await graph.from_scratch() == rows
    await reject(3)  # nothing carries the value to 4 any more
    assert await graph.rows() == {}


async def test_a_long_chain_is_followed_to_its_end(graph: Graph) -> None:
    n = 60
    await graph.nodes(*range(1, n + 1))
    await graph.detect(1)
    for i in range(1, n):
        await graph.edge(i, i + 1)
    rows = await graph.rows()
    assert rows[(n, CPF, False)] == (n - 1, list(range(1, n + 1)))
    assert len(rows) == n - 1
    await graph.edge(1, 30)  # a shortcut adds no state: nothing is rewritten
    assert await graph.rows() == rows
    scratch = await graph.from_scratch()
    assert scratch.keys() == rows.keys()
    assert scratch[(n, CPF, False)] == (n - 30 + 1, [1, *range(30, n + 1)])


async def test_removing_one_origin_keeps_what_another_still_reaches(graph: Graph) -> None:
    await graph.nodes(1, 2, 3, 4, 5)
    await graph.detect(1)
    await graph.detect(2)
    for source, target in [(1, 3), (3, 4), (4, 5), (2, 4)]:
        await graph.edge(source, target)
    assert (await graph.rows())[(5, CPF, False)] == (3, [1, 3, 4, 5])
    await graph.detect(1, present=False)
    assert await graph.rows() == {(4, CPF, False): (1, [2, 4]), (5, CPF, False): (2, [2, 4, 5])}


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_incremental_maintenance_gives_the_closure_of_a_from_scratch_run_in_any_order(
    engine: AsyncEngine, seed: int
) -> None:
    rnd = random.Random(seed)
    n = 14
    edges = {(rnd.randrange(1, n + 1), rnd.randrange(1, n + 1), rnd.random() < 0.2) for _ in range(30)}
    steps: list[tuple[str, Any]] = [("edge", e) for e in sorted(edges) if e[0] != e[1]]
    steps += [("detect", i) for i in (1, 5)] + [("undetect", 5)] + [("detect", 9)]
    rnd.shuffle(steps)
    if steps.index(("undetect", 5)) < steps.index(("detect", 5)):
        steps.remove(("undetect", 5))
        steps.append(("undetect", 5))
    results = []
    for order in (steps, [s for s in steps if s[0] == "edge"] + [s for s in steps if s[0] != "edge"]):
        async with raw_transaction(engine) as conn:
            graph = Graph(conn)
            await graph.nodes(*range(1, n + 1))
            for kind, what in order:
                if kind == "edge":
                    await graph.edge(what[0], what[1], masking=what[2])
                else:
                    await graph.detect(what, present=kind == "detect")
                assert_paths_are_real(graph, await graph.rows())
            live = await graph.rows()
            assert set(live) == graph.closure()
            scratch = await graph.from_scratch()
            assert set(scratch) == set(live)
            assert_paths_are_real(graph, scratch)
            # from scratch every path is a shortest one; live ones are never shorter
            assert all(live[k][0] >= scratch[k][0] for k in live)
            results.append(set(live))
        async with raw_transaction(engine) as conn:
            await conn.execute(
                "TRUNCATE classifications, column_edges, dataset_fields, datasets, namespaces RESTART IDENTITY CASCADE"
            )
    assert results[0] == results[1]
    assert results[0]  # the scenario propagates something


async def test_a_decision_re_derives_only_its_own_tag(graph: Graph) -> None:
    email = "PII.EMAIL"
    await graph.nodes(1, 2, 3)
    await graph.detect(1)
    await graph.detect(1, email)
    await graph.edge(1, 2)
    await graph.edge(2, 3)
    query = "SELECT id FROM classifications WHERE source = 'propagated' AND tag = $1 ORDER BY id"
    email_rows = [r["id"] for r in await graph.conn.fetch(query, email)]
    assert len(email_rows) == 2
    assert graph.sa is not None
    await record_decision(
        graph.sa,
        namespace="ns",
        dataset="ds2",
        field="f",
        tag=CPF,
        action="reject",
        reason="no",
        author="t",
    )
    assert await graph.conn.fetch(query, CPF) == []
    assert [r["id"] for r in await graph.conn.fetch(query, email)] == email_rows  # untouched, not re-derived


async def test_concurrent_propagations_see_each_others_rows(engine: AsyncEngine) -> None:
    """A seed added in one transaction and an edge out of it added in another, at the same time: without
    the propagation lock each misses the other's uncommitted row and the target never gets the tag."""
    async with raw_transaction(engine) as conn:
        graph = Graph(conn)
        await graph.nodes(1, 2)
    async with engine.connect() as first_sa, engine.connect() as second_sa:
        first, second = await raw_connection(first_sa), await raw_connection(second_sa)
        one, two = first.transaction(), second.transaction()
        await one.start()
        await two.start()
        await _bind(graph, first).detect(1)  # propagates, holding the lock until it commits
        await second.execute(
            "INSERT INTO column_edges (target_dataset_id, target_field_id, source_dataset_id, source_field_id, "
            "transformation_type, transformation_subtype, masking, first_seen, last_seen) "
            "VALUES ($1, $2, $3, $4, 'DIRECT', 'IDENTITY', false, now(), now())",
            graph.datasets[2],
            graph.fields[2],
            graph.datasets[1],
            graph.fields[1],
        )
        waiting = asyncio.create_task(relax(second, [graph.fields[2]]))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # it waits for the first propagation to commit
        await one.commit()
        await waiting
        await two.commit()
    async with raw_transaction(engine) as conn:
        rows = await conn.fetch("SELECT field_id FROM classifications WHERE source = 'propagated'")
    assert [r["field_id"] for r in rows] == [graph.fields[2]]


def _bind(graph: Graph, conn: asyncpg.Connection[Any]) -> Graph:
    bound = Graph(conn)
    bound.fields, bound.datasets, bound.index = graph.fields, graph.datasets, graph.index
    return bound
