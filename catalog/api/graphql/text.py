"""GraphQL variables and string literals PostgreSQL cannot store: a GraphQL error naming the argument.

A NUL or a lone surrogate in a variable used to reach a resolver's query and fail there as "internal
error". `StorableText` checks every variable value and string literal (catalog/api/text.py) once the
document is parsed, before validation and execution, and answers like any other bad argument:
`{"data": null, "errors": [{"message": …, "extensions": {"code": "BAD_USER_INPUT", "argument": …}}]}`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from graphql.language import (
    ArgumentNode,
    DocumentNode,
    ListValueNode,
    Node,
    ObjectValueNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from strawberry.extensions import SchemaExtension

from catalog.api.text import json_defect, text_defect


class StorableText(SchemaExtension):
    """Refuse the operation when a variable or a string literal is not storable text."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None:
            error = unstorable_text_error(document, context.variables)
            if error is not None:
                # This error alone, whatever validation (ValidationCache, before this extension) found:
                # strawberry then answers with it, executing nothing.
                context.pre_execution_errors = [error]
        yield


def unstorable_text_error(document: DocumentNode, variables: dict[str, Any] | None) -> GraphQLError | None:
    """The error for the first variable or literal that cannot be stored, or None."""
    found = json_defect(variables) if variables else None
    if found is not None:
        pointer, reason = found
        name = pointer.split("/")[1]
        where = pointer[len(f"/{name}") :]
        argument = _arguments_of_variables(document).get(name, name)
        inside = f" at {where}" if where else ""
        return _error(f"variable ${name} (argument {argument!r}){inside} {reason}", argument)
    for argument, value in _string_literals(document):
        in_literal = text_defect(value)
        if in_literal is not None:
            return _error(f"argument {argument!r} {in_literal}", argument)
    return None


def _error(message: str, argument: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT", "argument": argument})


def _arguments(node: Node) -> Iterator[ArgumentNode]:
    if isinstance(node, ArgumentNode):
        yield node
        return
    for key in node.keys:
        child = getattr(node, key, None)
        for item in child if isinstance(child, tuple | list) else (child,):
            if isinstance(item, Node):
                yield from _arguments(item)


def _values(value: ValueNode, argument: str) -> Iterator[tuple[str, ValueNode]]:
    """(argument path, value node) of every leaf value inside an argument value."""
    if isinstance(value, ListValueNode):
        for item in value.values:
            yield from _values(item, argument)
    elif isinstance(value, ObjectValueNode):
        for field in value.fields:
            yield from _values(field.value, f"{argument}.{field.name.value}")
    else:
        yield argument, value


def _arguments_of_variables(document: DocumentNode) -> dict[str, str]:
    """Variable name -> the argument it is first passed to."""
    used: dict[str, str] = {}
    for argument in _arguments(document):
        for path, value in _values(argument.value, argument.name.value):
            if isinstance(value, VariableNode):
                used.setdefault(value.name.value, path)
    return used


def _string_literals(document: DocumentNode) -> Iterator[tuple[str, str]]:
    for argument in _arguments(document):
        for path, value in _values(argument.value, argument.name.value):
            if isinstance(value, StringValueNode):
                yield path, value.value
