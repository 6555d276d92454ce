"""The GraphQL schema: root queries, and the protection every query goes through (depth, alias and token
limits, a page size cap, a time limit, masking of unexpected errors)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterable
from functools import partial
from typing import Any, Literal

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from catalog.api.graphql import classification as pii_classification
from catalog.api.graphql import decisions
from catalog.api.graphql.classification import PiiFlow, PiiInventoryPage
from catalog.api.graphql.context import Limits
from catalog.api.graphql.errors import QueryTimeout, UserError, is_user_error, user_error_extensions
from catalog.api.graphql.execution import LeanExecutionContext
from catalog.api.graphql.text import StorableText
from catalog.api.graphql.types import (
    ColumnLineageEdge,
    ColumnLineageGraph,
    ColumnNode,
    Dataset,
    DatasetField,
    Info,
    Job,
    LineageDirection,
    LineageEdge,
    LineageGraph,
    LineageNode,
    Namespace,
    NodeInput,
    NodeKind,
    Page,
    PageInfo,
    Run,
    SearchResult,
    decode_cursor,
    described,
    described_mutation,
    encode_cursor,
    internals,
    page_size,
)
from catalog.db.errors import DatabaseUnavailable, is_unavailable
from catalog.lineage import service as lineage_service
from catalog.lineage.service import ColumnGraph
from catalog.metadata import queries
from catalog.policy.masking import collapse_unreadable, hide_columns


@strawberry.type
class Query:
    @described("Namespaces by name.")
    async def namespaces(self, info: Info, first: int = 100, after: str | None = None) -> Page[Namespace]:
        limit = page_size(info, first)
        key = str(decode_cursor(after, 1)[0]) if after is not None else None
        async with info.context.db.use() as conn:
            rows = await queries.namespaces_page(conn, after=key, limit=limit + 1)
        more, rows = len(rows) > limit, rows[:limit]
        end = encode_cursor(rows[-1].name) if rows else None
        return Page(
            nodes=[Namespace(row=r) for r in rows], page_info=PageInfo(has_next_page=more, end_cursor=end)
        )

    @described(
        "Datasets ordered by namespace then name; `search` matches part of the name "
        "(case-insensitive). Product, tier and PII filters arrive with classifications."
    )
    async def datasets(
        self,
        info: Info,
        namespace: str | None = None,
        search: str | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Page[Dataset]:
        limit = page_size(info, first)
        key: tuple[str, str] | None = None
        if after is not None:
            ns, name = decode_cursor(after, 2)
            key = (str(ns), str(name))
        async with info.context.db.use() as conn:
            # One row more than asked tells whether there is a next page without a count.
            rows = await queries.datasets_page(
                conn, namespace=namespace, search=search, after=key, limit=limit + 1
            )
        more, rows = len(rows) > limit, rows[:limit]
        for row in rows:  # later lookups of these datasets by id need no query
            info.context.loaders.dataset_by_id.prime(row.id, row)
        end = encode_cursor(rows[-1].namespace, rows[-1].name) if rows else None
        return Page(
            nodes=[Dataset(row=r) for r in rows], page_info=PageInfo(has_next_page=more, end_cursor=end)
        )

    @described("A dataset by namespace and name.")
    async def dataset(self, info: Info, namespace: str, name: str) -> Dataset | None:
        row = await info.context.loaders.dataset_by_name.load((namespace, name))
        return Dataset(row=row) if row else None

    @described("A job by namespace and name.")
    async def job(self, info: Info, namespace: str, name: str) -> Job | None:
        row = await info.context.loaders.job_by_name.load((namespace, name))
        return Job(row=row) if row else None

    @described(
        "A run by its OpenLineage run id (when a producer reused the id under several "
        "jobs, the most recently seen run). Internals of its job's product: another product's "
        "runs are null with a FORBIDDEN error."
    )
    async def run(self, info: Info, id: uuid.UUID) -> Run | None:
        async with info.context.db.use() as conn:
            rows = await queries.runs_by_uuid(conn, id)
        if not rows:
            return None
        job = await info.context.loaders.job_by_id.load(rows[0].job_id)
        assert job is not None  # a run's job exists (foreign key)
        await internals(info, "job", job)
        return Run(row=rows[0])

    @described(
        "Datasets, jobs and fields whose name contains `query`: exact matches first, then "
        "prefixes, then shorter names. Filters, applied before `first`: `product` (a dataset's or "
        "job's stored product; a field's is its dataset's), `tier` (its namespace's tier), `hasPii` "
        "(a dataset with/without any PII on it or its fields, a field that does/does not hold PII; "
        "jobs are left out). Whether a dataset holds PII is internals: with `hasPii`, datasets and "
        "fields of datasets the caller may not read are left out, so a page may be shorter."
    )
    async def search(
        self,
        info: Info,
        query: str,
        first: int = 20,
        product: str | None = None,
        tier: str | None = None,
        has_pii: bool | None = None,
    ) -> list[SearchResult]:
        limit = page_size(info, first)
        if not query.strip():
            raise UserError("`query` must not be blank")
        async with info.context.db.use() as conn:
            found_hits = await queries.search(
                conn, term=query.strip(), limit=limit, product=product, tier=tier, has_pii=has_pii
            )
        hits = [(h.kind, h.id) for h in found_hits]
        loaders = info.context.loaders
        authz = info.context.authz
        out: list[Dataset | Job | DatasetField] = []
        # The loaders batch each kind into one statement; gathering keeps the hits' order.
        found = await asyncio.gather(
            *(
                loaders.dataset_by_id.load(i)
                if kind == "dataset"
                else loaders.job_by_id.load(i)
                if kind == "job"
                else loaders.field_by_id.load(i)
                for kind, i in hits
            )
        )
        # A field is another product's internals: hits in datasets the caller may not read are left
        # out (names of datasets and jobs are discoverable). Both look-ups batch across the hits.
        field_rows = [r for r in found if isinstance(r, queries.FieldRow)]
        owners = await asyncio.gather(*(loaders.dataset_by_id.load(f.dataset_id) for f in field_rows))
        readable = await asyncio.gather(
            *(authz.allows("dataset", d.namespace, d.name) for d in owners if d is not None)
        )
        hidden = {
            d.id for d, ok in zip((d for d in owners if d is not None), readable, strict=True) if not ok
        }
        unreadable_sets: set[int] = set()
        if has_pii is not None:
            # The filter itself tells whether a dataset holds PII: unreadable datasets are left out too.
            sets_ = [r for r in found if isinstance(r, queries.DatasetRow)]
            ok_sets = await asyncio.gather(*(authz.allows("dataset", d.namespace, d.name) for d in sets_))
            unreadable_sets = {d.id for d, ok in zip(sets_, ok_sets, strict=True) if not ok}
        # Fields of datasets read through a masked-columns-only grant come redacted (masking.py).
        shown = [d for d in owners if d is not None and d.id not in hidden]
        sets = await asyncio.gather(*(authz.redacted_columns(d.namespace, d.name) for d in shown))
        redacted = {d.id: s for d, s in zip(shown, sets, strict=True)}
        for row in found:
            if isinstance(row, queries.FieldRow) and row.dataset_id in hidden:
                continue
            if isinstance(row, queries.DatasetRow) and row.id in unreadable_sets:
                continue
            if isinstance(row, queries.DatasetRow):
                out.append(Dataset(row=row))
            elif isinstance(row, queries.JobRow):
                out.append(Job(row=row))
            elif isinstance(row, queries.FieldRow):
                out.append(DatasetField(row=row, redacted=redacted.get(row.dataset_id, frozenset())))
        return out

    @described(
        "Datasets and jobs within `depth` job hops of a node, walking up (what it is made from), down "
        "(what is made from it) or both; `asOf` gives the graph as it stood at that instant. Null when "
        "the node does not exist (at `asOf`). Internals of the node's product: another product's "
        "graph needs a grant on the node (null with a FORBIDDEN error); within a readable graph, "
        "other products' nodes appear by name and their dataset's own fields stay protected."
    )
    async def lineage(
        self,
        info: Info,
        node: NodeInput,
        direction: LineageDirection = LineageDirection.BOTH,
        depth: int = 5,
        as_of: dt.datetime | None = None,
    ) -> LineageGraph | None:
        kind: Literal["dataset", "job"] = "dataset" if node.kind is NodeKind.DATASET else "job"
        await info.context.authz.require_read(kind, node.namespace, node.name)
        async with info.context.db.use() as conn:
            graph = await lineage_service.lineage(
                conn,
                kind=kind,
                namespace=node.namespace,
                name=node.name,
                direction=direction.value,
                depth=lineage_depth(info, depth),
                as_of=as_of,
            )
        if graph is None:
            return None
        return LineageGraph(
            root=strawberry.ID(graph.root),
            nodes=[
                LineageNode(id=strawberry.ID(n.id), kind=NodeKind(n.kind), namespace=n.namespace, name=n.name)
                for n in graph.nodes
            ],
            edges=[
                LineageEdge(
                    origin=strawberry.ID(e.origin),
                    destination=strawberry.ID(e.destination),
                    first_seen=e.first_seen,
                    last_seen=e.last_seen,
                )
                for e in graph.edges
            ],
        )

    @described(
        "Column-level lineage of a field (or of every field of the dataset when `field` is null) within "
        "`depth` hops, each edge with its transformation (type, subtype, masking) and the job behind it. "
        "Another product's dataset needs a grant (null with a FORBIDDEN error); within a readable "
        "graph, columns of datasets the caller may not read appear only as their dataset (`field` "
        "null) and the edges those datasets declare are left out."
    )
    async def column_lineage(
        self,
        info: Info,
        namespace: str,
        dataset: str,
        field: str | None = None,
        direction: LineageDirection = LineageDirection.UPSTREAM,
        depth: int = 5,
        as_of: dt.datetime | None = None,
    ) -> ColumnLineageGraph | None:
        await info.context.authz.require_read("dataset", namespace, dataset)
        async with info.context.db.use() as conn:
            graph = await lineage_service.column_lineage(
                conn,
                namespace=namespace,
                dataset=dataset,
                field=field,
                direction=direction.value,
                depth=lineage_depth(info, depth),
                as_of=as_of,
            )
        if graph is None:
            return None
        graph = await readable_columns(info, graph)
        return ColumnLineageGraph(
            root=strawberry.ID(graph.root),
            nodes=[
                ColumnNode(id=strawberry.ID(n.id), namespace=n.namespace, dataset=n.dataset, field=n.field)
                for n in graph.nodes
            ],
            edges=[
                ColumnLineageEdge(
                    origin=strawberry.ID(e.origin),
                    destination=strawberry.ID(e.destination),
                    transformation_type=e.transformation_type,
                    transformation_subtype=e.transformation_subtype,
                    masking=e.masking,
                    description=e.description,
                    job_namespace=e.job_namespace,
                    job_name=e.job_name,
                    first_seen=e.first_seen,
                    last_seen=e.last_seen,
                )
                for e in graph.edges
            ],
        )

    @described(
        "Every field holding PII (effective, unmasked), ordered by namespace, dataset, field and tag; "
        "`product` (the dataset's stored assignment, else products.yaml) and `tier` (its namespace's) "
        "filter, `asOf` gives the inventory as it stood then (see GET /api/v1/pii/inventory). With "
        "`product`, that product's internals are needed (null with a FORBIDDEN error); without, fields "
        "of datasets the caller may not read are left out."
    )
    async def pii_inventory(
        self,
        info: Info,
        product: str | None = None,
        tier: str | None = None,
        as_of: dt.datetime | None = None,
        first: int = 100,
        after: str | None = None,
    ) -> PiiInventoryPage | None:
        limit = page_size(info, first)
        offset = 0
        if after is not None:
            raw = decode_cursor(after, 1)[0]
            if not isinstance(raw, int) or raw < 0:
                raise UserError("`after` is not a cursor this API returned")
            offset = raw
        nodes, total = await pii_classification.pii_inventory(
            info, product=product, tier=tier, as_of=as_of, first=limit, offset=offset
        )
        end = offset + len(nodes)
        return PiiInventoryPage(
            nodes=nodes,
            total_count=total,
            page_info=PageInfo(has_next_page=end < total, end_cursor=encode_cursor(end) if nodes else None),
        )

    @described(
        "Where a column's value goes, hop by hop up to `depth` hops: every edge out of it and out of "
        "every column its value reaches, with what the edge does (carries, masked — a masking point — "
        "aggregated, influences for INDIRECT edges) and the target's classifications. Null when the field "
        "does not exist. Internals of the origin dataset (null with a FORBIDDEN error); hops into or out "
        "of datasets the caller may not read are left out and counted."
    )
    async def pii_flow(
        self, info: Info, namespace: str, dataset: str, field: str, depth: int = 10
    ) -> PiiFlow | None:
        return await pii_classification.pii_flow(
            info, namespace=namespace, dataset=dataset, field=field, depth=lineage_depth(info, depth)
        )


async def readable_columns(info: Info, graph: ColumnGraph) -> ColumnGraph:
    """The graph with the columns of datasets the caller may not read collapsed to their dataset's
    node (`field` null), and without the edges such a dataset declares (its column lineage facet is
    its internals); edges from its columns into readable ones keep the readable side's transformation."""
    datasets = sorted({(n.namespace, n.dataset) for n in graph.nodes})
    verdicts = await asyncio.gather(*(info.context.authz.allows("dataset", ns, ds) for ns, ds in datasets))
    hidden = {key for key, ok in zip(datasets, verdicts, strict=True) if not ok}
    # Datasets read through a masked-columns-only grant: their PII columns' hops are hidden (one batched
    # statement for all of them; catalog/policy/masking.py).
    readable = [key for key in datasets if key not in hidden]
    redacted = await asyncio.gather(*(info.context.authz.redacted_columns(ns, ds) for ns, ds in readable))
    if any(redacted):
        graph = hide_columns(graph, dict(zip(readable, redacted, strict=True)))
    return collapse_unreadable(graph, hidden)


def lineage_depth(info: Info, depth: int) -> int:
    """`depth`, checked against the configured maximum (the walk's cost grows with it)."""
    maximum = info.context.limits.max_lineage_depth
    if not 0 <= depth <= maximum:
        raise UserError(f"`depth` must be between 0 and {maximum}; got {depth}")
    return depth


@strawberry.type
class Mutation:
    @described_mutation(
        description="A steward adds, confirms or rejects a PII/PCI tag on a field (omit `field` for the whole "
        "dataset). The previous live decision on the same tag is withdrawn, propagation is redone downstream, "
        "and the decision is recorded in the audit log. As REST POST /api/v1/classifications/decisions."
    )
    async def decide_classification(
        self,
        info: Info,
        namespace: str,
        dataset: str,
        tag: str,
        action: decisions.DecisionAction,
        field: str | None = None,
        reason: str | None = None,
    ) -> decisions.ClassificationDecision | None:
        return await decisions.decide(
            info, namespace=namespace, dataset=dataset, field=field, tag=tag, action=action, reason=reason
        )

    @described_mutation(
        description="Withdraw a decision (kept for audit, marked retired); the field falls back to its "
        "derived classifications. As REST DELETE /api/v1/classifications/decisions/{id}."
    )
    async def retire_classification_decision(
        self, info: Info, decision_id: int
    ) -> decisions.ClassificationDecision | None:
        return await decisions.retire(info, decision_id=decision_id)


DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"


class CatalogSchema(strawberry.Schema):
    """The schema with a time limit on each operation: parsing, validation and execution together."""

    def __init__(self, *, timeout_seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout_seconds = timeout_seconds

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        # The database also cancels any single statement (statement_timeout, see context.py); this
        # bounds everything else, e.g. many statements that are each quick, or Python-side work.
        try:
            async with asyncio.timeout(self.timeout_seconds) as deadline:
                result = await super().execute(
                    query,
                    variable_values=variable_values,
                    context_value=context_value,
                    root_value=root_value,
                    operation_name=operation_name,
                    allowed_operation_types=allowed_operation_types,
                    operation_extensions=operation_extensions,
                )
        except TimeoutError:
            if not deadline.expired():
                raise
            error = QueryTimeout(self.timeout_seconds)
            return ExecutionResult(
                data=None, errors=[GraphQLError(str(error), extensions={"code": error.code})]
            )
        if any((e.extensions or {}).get("code") == DATABASE_UNAVAILABLE for e in result.errors or ()):
            # Not a GraphQL answer with holes: the whole request answers 503 + Retry-After, as REST does
            # (the app's handler, catalog/api/rest/problems.py), so clients retry it as a whole.
            raise DatabaseUnavailable("a resolver lost its database connection")
        return result


def _add_error_codes(error: GraphQLError) -> bool:
    """MaskErrors predicate that also labels what it lets through with a machine-readable code."""
    if error.original_error is not None and is_unavailable(error.original_error):
        error.extensions = {**(error.extensions or {}), "code": DATABASE_UNAVAILABLE}
        return False  # CatalogSchema.execute turns it into a 503
    if is_user_error(error):
        if error.original_error is not None:
            error.extensions = {**(error.extensions or {}), **user_error_extensions(error.original_error)}
        return False
    return True


VALIDATION_CACHE_SIZE = 256


def build_schema(limits: Limits) -> CatalogSchema:
    """The schema with the given limits (one per app: the limits come from its settings)."""
    # The depth and alias rules are built once per schema, not per request as the limiter extensions
    # would: ValidationCache keys on the rule classes, and a class made per request would never hit.
    rules = [
        *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
    ]
    return CatalogSchema(
        timeout_seconds=limits.timeout_seconds,
        query=Query,
        mutation=Mutation,
        # Lineage graphs' node and edge lists are completed in one pass (see execution.py).
        execution_context_class=LeanExecutionContext,
        # Factories, not instances: strawberry builds fresh extensions per request.
        extensions=[
            partial(AddValidationRules, rules),
            partial(MaxTokensLimiter, max_token_count=limits.max_tokens),
            # The explorer repeats a few query texts: parse each once (after the token limit set the
            # parser's options) and validate each parsed document once; together several ms a request.
            # Validation depends only on the document, the schema and the rules, never on variables.
            partial(ParserCache, maxsize=VALIDATION_CACHE_SIZE),
            partial(ValidationCache, maxsize=VALIDATION_CACHE_SIZE),
            # After ValidationCache (which sets the validation errors; an unstorable text replaces them):
            # variables differ per request, so this check is never cached.
            StorableText,
            partial(
                MaskErrors,
                should_mask_error=_add_error_codes,
                error_message="internal error; quote the X-Request-ID response header",
            ),
        ],
    )
