"""A fast path in GraphQL execution for long lists of plain objects (lineage graphs' nodes and edges).

graphql-core completes every field of every object separately: resolve info, resolver call, awaitable
checks, leaf coercion, path bookkeeping — about 10 µs a field. A 5-hop lineage graph of a few hundred
nodes and edges, four fields each, spent tens of milliseconds there, more than the traversal itself.

`LeanExecutionContext` completes a list in one pass when every item is an instance of a plain
strawberry type (fields without resolvers, as the lineage types are) and the selection on it asks only
for such fields of leaf type (scalars, enums) and `__typename`: each item becomes a dict of the
attribute values coerced by the very scalar/enum the generic path uses, so the response is the same.
Anything else — a field with a resolver or arguments (e.g. `LineageNode.dataset`), an object-typed
field, `@defer`/`@stream`, field middleware, an item of another class, a value the coercion rejects
or null in a non-null field — takes graphql-core's generic path for that list, which then reports
errors exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLID,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLString,
    Undefined,
    is_leaf_type,
    is_non_null_type,
)
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

TYPENAME = "__typename"


@dataclass(frozen=True, slots=True)
class _LeanField:
    key: str  # the response key (alias or field name)
    attribute: str | None  # the Python attribute; None for __typename
    coerce: Callable[[Any], Any] | None
    non_null: bool
    # What the coercion does to a `str` (String, ID: returns it as is) or to an enum member (always the
    # same name): skip the call then. Same result, a function call less per field.
    str_as_is: bool
    memo: dict[Any, Any] | None


@dataclass(frozen=True, slots=True)
class _LeanPlan:
    cls: type
    typename: str
    fields: tuple[_LeanField, ...]


class LeanExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context with the one-pass completion of lists of plain objects."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Keyed like graphql-core's own memo of collected subfields (the field details list is kept
        # alive with the plan, so its id cannot be reused during the execution).
        self._lean_plans: dict[tuple[int, int], tuple[Any, _LeanPlan | None]] = {}

    def complete_iterable_value(
        self,
        item_type: GraphQLOutputType,
        field_details_list: Any,
        info: GraphQLResolveInfo[Any],
        path: Path,
        items: Iterable[Any],
        position_context: Any,
    ) -> Any:
        if isinstance(items, list | tuple) and items:
            plan = self._lean_plan(item_type, field_details_list, path)
            if plan is not None:
                completed = _complete(plan, items)
                if completed is not None:
                    return completed
        return super().complete_iterable_value(
            item_type, field_details_list, info, path, items, position_context
        )

    def _lean_plan(
        self, item_type: GraphQLOutputType, field_details_list: Any, path: Path
    ) -> _LeanPlan | None:
        key = (id(item_type), id(field_details_list))
        cached = self._lean_plans.get(key)
        if cached is None:
            cached = (field_details_list, self._make_plan(item_type, field_details_list, path))
            self._lean_plans[key] = cached
        return cached[1]

    def _make_plan(
        self, item_type: GraphQLOutputType, field_details_list: Any, path: Path
    ) -> _LeanPlan | None:
        middleware = self.middleware_manager
        if (middleware is not None and middleware.middlewares) or not isinstance(item_type, GraphQLNonNull):
            return None  # nullable items: the generic path (a null item is completed differently)
        object_type = item_type.of_type
        if not isinstance(object_type, GraphQLObjectType) or object_type.is_type_of is not None:
            return None
        definition = object_type.extensions.get("strawberry-definition")
        cls = getattr(definition, "origin", None)
        if not isinstance(cls, type) or self.get_stream_usage(field_details_list, path) is not None:
            return None
        grouped, defer_usages, _ = self.collect_subfields(object_type, field_details_list)
        if defer_usages:
            return None
        fields = []
        for response_key, details in grouped.items():
            node = details[0].node
            if any(d.node.name.value != node.name.value for d in details):
                return None  # cannot happen in a valid document; never guess
            name = node.name.value
            if name == TYPENAME:
                fields.append(_LeanField(response_key, None, None, True, False, None))
                continue
            field_def = object_type.fields.get(name)
            if field_def is None or field_def.args or node.arguments:
                return None
            strawberry_field = field_def.extensions.get("strawberry-definition")
            if not isinstance(strawberry_field, StrawberryField) or not strawberry_field.is_basic_field:
                return None
            if not getattr(field_def.resolve, "_is_default", False):
                return None
            non_null = is_non_null_type(field_def.type)
            leaf = field_def.type.of_type if isinstance(field_def.type, GraphQLNonNull) else field_def.type
            if not is_leaf_type(leaf):
                return None
            assert isinstance(leaf, GraphQLLeafType)
            fields.append(
                _LeanField(
                    response_key,
                    strawberry_field.python_name,
                    leaf.coerce_output_value,
                    non_null,
                    str_as_is=leaf is GraphQLString or leaf is GraphQLID,
                    memo={} if isinstance(leaf, GraphQLEnumType) else None,
                )
            )
        return _LeanPlan(cls, object_type.name, tuple(fields))


def _complete(plan: _LeanPlan, items: Iterable[Any]) -> list[dict[str, Any]] | None:
    """The completed list, or None when any item needs the generic path (which then reports why)."""
    cls, typename = plan.cls, plan.typename
    fields = [(f.key, f.attribute, f.coerce, f.non_null, f.str_as_is, f.memo) for f in plan.fields]
    out: list[dict[str, Any]] = []
    append = out.append
    try:
        for item in items:
            if type(item) is not cls:
                return None
            completed: dict[str, Any] = {}
            for key, attribute, coerce, non_null, str_as_is, memo in fields:
                if attribute is None:
                    completed[key] = typename
                    continue
                value = getattr(item, attribute)
                if value is None:
                    if non_null:
                        return None
                    completed[key] = None
                elif str_as_is and type(value) is str:
                    completed[key] = value
                elif memo is not None and value in memo:
                    completed[key] = memo[value]
                else:
                    assert coerce is not None
                    coerced = coerce(value)
                    if coerced is None or coerced is Undefined:
                        return None
                    if memo is not None:
                        memo[value] = coerced
                    completed[key] = coerced
            append(completed)
    except Exception:  # the generic path raises it again, as a located field error
        return None
    return out
