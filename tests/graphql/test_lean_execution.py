"""The one-pass completion of lists of plain objects (catalog/api/graphql/execution.py) answers exactly
what graphql-core's generic path answers — aliases, fragments, directives, __typename, errors — and the
validation cache (strawberry's, over the catalog's rules) never lets through a query that fails validation."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import graphql
import pytest
import strawberry
from graphql import print_ast

from catalog.api.graphql import execution
from catalog.api.graphql.context import Limits
from catalog.api.graphql.execution import LeanExecutionContext
from catalog.api.graphql.schema import build_schema

AT = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


@strawberry.enum
class Kind(enum.Enum):
    DATASET = "dataset"
    JOB = "job"


@strawberry.type
class Item:
    id: strawberry.ID
    kind: Kind
    name: str
    note: str | None
    seen: dt.datetime

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()


BROKEN: list[Item] = [Item(id=strawberry.ID("x"), kind=Kind.JOB, name=None, note=None, seen=AT)]  # type: ignore[arg-type]


def some_items() -> list[Item]:
    return [
        Item(
            id=strawberry.ID(f"i{i}"),
            kind=Kind.DATASET if i % 2 else Kind.JOB,
            name=f"n{i}",
            note=None if i % 3 else f"note {i}",
            seen=AT + dt.timedelta(seconds=i),
        )
        for i in range(7)
    ]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return some_items()

    @strawberry.field
    def broken(self) -> list[Item]:
        return BROKEN

    @strawberry.field
    async def later(self) -> list[Item]:
        return some_items()


QUERIES = [
    "{ items { id kind name note seen } }",
    "{ items { __typename a: name b: name kind } later { id } }",
    "{ items { ...F } } fragment F on Item { id seen ... on Item { kind } }",
    "query($s: Boolean!) { items { id name @skip(if: $s) note @include(if: $s) } }",
    "{ items { id shout } }",  # a resolver field: the generic path
    "{ broken { id name } }",  # null in a non-null field: the generic path's error
]


async def execute(schema: strawberry.Schema, query: str) -> dict[str, Any]:
    result = await schema.execute(query, variable_values={"s": True})
    return {"data": result.data, "errors": [(e.message, e.path) for e in result.errors or []]}


@pytest.mark.parametrize("query", QUERIES)
async def test_lean_completion_answers_what_the_generic_path_answers(query: str) -> None:
    lean = strawberry.Schema(query=Query, execution_context_class=LeanExecutionContext)
    generic = strawberry.Schema(query=Query)
    assert await execute(lean, query) == await execute(generic, query)


async def test_lists_of_plain_objects_take_the_one_pass_path(monkeypatch: pytest.MonkeyPatch) -> None:
    completed: list[bool] = []
    one_pass = execution._complete

    def spy(plan: Any, items: Any) -> Any:
        out = one_pass(plan, items)
        completed.append(out is not None)
        return out

    monkeypatch.setattr(execution, "_complete", spy)
    lean = strawberry.Schema(query=Query, execution_context_class=LeanExecutionContext)
    await execute(lean, QUERIES[1])
    assert completed == [True, True]  # items and later
    completed.clear()
    await execute(lean, "{ items { id shout } }")
    assert completed == []  # a resolver field: never tried


async def test_the_catalog_schema_validates_a_text_once_and_a_failing_one_fails_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """strawberry's ValidationCache over the catalog's own rules (depth, aliases): a repeated valid text
    is validated once, a failing one answers its errors every time."""
    validations: list[str] = []

    def counting(schema: Any, document: Any, rules: Any) -> Any:
        validations.append(print_ast(document))
        return graphql.validate(schema, document, rules)

    # strawberry.schema.schema.validate_document calls graphql-core's `validate` by its module global.
    monkeypatch.setattr("strawberry.schema.schema.validate", counting)
    schema = build_schema(
        Limits(
            max_depth=2,
            max_aliases=3,
            max_tokens=1000,
            max_page_size=10,
            max_lineage_depth=2,
            timeout_seconds=5,
        )
    )
    too_deep = "{ datasets { nodes { fields { name } } } }"
    aliased = "{ a: __typename b: __typename c: __typename d: __typename }"
    for _ in range(3):
        ok = await schema.execute("{ __typename }")
        assert ok.errors is None
        assert ok.data == {"__typename": "Query"}
        deep = await schema.execute(too_deep)
        assert deep.errors
        assert "exceeds maximum operation depth" in deep.errors[0].message
        aliases = await schema.execute(aliased)
        assert aliases.errors
        assert "aliases" in aliases.errors[0].message
        unknown = await schema.execute("{ nope }")
        assert unknown.errors
        assert "nope" in unknown.errors[0].message
    assert len(validations) == 4, validations  # each text once, then from the cache
