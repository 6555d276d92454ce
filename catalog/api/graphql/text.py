"""GraphQL variables and string literals PostgreSQL cannot store: a 400 naming the variable or argument.

The answer is problem+json (as REST's) and carries a GraphQL `errors` list too, as the GraphQL over HTTP
spec has it for a request error (a 4xx, no `data`), so both kinds of client read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError, parse
from graphql.language import ArgumentNode, ListValueNode, Node, ObjectValueNode, StringValueNode, ValueNode

from catalog.api.rest.problems import Problem
from catalog.api.text import json_defect, text_defect


def refuse_unstorable_text(query: str | None, variables: dict[str, Any] | None) -> None:
    """Raise a 400 Problem for the first variable, or string literal, that is not storable text."""
    found = json_defect(variables, "/variables") if variables else None
    if found is not None:
        pointer, reason = found
        name = pointer.split("/")[2]
        where = pointer[len(f"/variables/{name}") :]
        _refuse(f"variable ${name}{' at ' + where if where else ''} {reason}", pointer, variable=name)
    if not query:
        return
    in_text = text_defect(query)
    if in_text is not None:
        _refuse(f"the query text {in_text}", "/query")
    if "\\u" not in query:
        return  # a literal can only hold NUL or a lone surrogate through a \u escape
    try:
        document = parse(query, no_location=True)
    except GraphQLError:
        return  # a syntax error: execution reports it as such
    for argument, value in _string_literals(document):
        in_literal = text_defect(value)
        if in_literal is not None:
            _refuse(f"argument {argument!r} {in_literal}", "/query", argument=argument)


def _string_literals(node: Node, argument: str | None = None) -> Iterator[tuple[str, str]]:
    """(argument name, value) of every string literal in argument values, nested ones included."""
    if isinstance(node, ArgumentNode):
        yield from _values(node.value, node.name.value)
        return
    for key in node.keys:
        child = getattr(node, key, None)
        children = child if isinstance(child, tuple | list) else (child,)
        for item in children:
            if isinstance(item, Node):
                yield from _string_literals(item, argument)


def _values(value: ValueNode, argument: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, StringValueNode):
        yield argument, value.value
    elif isinstance(value, ListValueNode):
        for item in value.values:
            yield from _values(item, argument)
    elif isinstance(value, ObjectValueNode):
        for field in value.fields:
            yield from _values(field.value, f"{argument}.{field.name.value}")


def _refuse(message: str, pointer: str, **names: str) -> None:
    raise Problem(
        "invalid-parameter",
        message,
        pointer=pointer,
        extra={"errors": [{"message": message, "extensions": {"code": "BAD_USER_INPUT", **names}}]},
    )
