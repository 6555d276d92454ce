"""REST for PII classifications: effective classifications, stewards' decisions, the PII inventory and flows.

GET    /api/v1/classifications?namespace=&dataset=[&field=]   effective classifications of a dataset
GET    /api/v1/classifications/decisions                      stewards' decisions (audit trail)
POST   /api/v1/classifications/decisions                      add / confirm / reject a tag on a field
DELETE /api/v1/classifications/decisions/{id}                 withdraw a decision (kept, marked retired)
GET    /api/v1/pii/inventory?namespace=&product=&tier=&asOf=  every field holding PII
GET    /api/v1/pii/flow?namespace=&dataset=&field=            where a column's value goes, hop by hop
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field

from catalog.api.rest.deps import ReadConn, WriteConn
from catalog.api.rest.inputs import InputModel, StoredText
from catalog.api.rest.problems import Problem, problem_responses
from catalog.api.rest.requires import Requires, authoriser_of
from catalog.auth.service import Principal
from catalog.classification import decisions, reads
from catalog.classification import flow as flows
from catalog.lineage import service as lineage_service
from catalog.policy.authoriser import InternalsScope
from catalog.policy.masking import is_redacted, redact_classifications

router = APIRouter(prefix="/api/v1", tags=["classification"])

ERRORS = problem_responses(400, 401, 404, 503)
Json = dict[str, Any]
Limit = Annotated[int, Query(ge=1, le=10_000, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")]


# PostgreSQL text cannot hold NUL and no stored name has one: a 400 naming the field, never a 500.
Name = StoredText


class DecisionIn(InputModel):
    """A steward's decision on one tag of one field (omit `field` to decide on the whole dataset)."""

    namespace: Name = Field(min_length=1, max_length=1024)
    dataset: Name = Field(min_length=1, max_length=4096)
    field: Name | None = Field(None, max_length=4096)
    tag: Name = Field(min_length=1, max_length=200, examples=["PII.CPF"], description="A PII.* or PCI.* tag.")
    action: Literal["add", "confirm", "reject"]
    reason: Name | None = Field(None, max_length=4000)


@router.get("/classifications", summary="Effective classifications of a dataset", responses=ERRORS)
async def list_classifications(
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.internals", "read", "query-dataset")],
    namespace: Annotated[Name, Query(min_length=1)],
    dataset: Annotated[Name, Query(min_length=1)],
    field: Annotated[Name | None, Query()] = None,
) -> Json:
    masked = authoriser_of(request).masked_route
    # Through a masked-columns-only grant the PII columns' rows are left out (catalog/policy/masking.py);
    # which columns those are is read off the dataset's own rows (no further statement).
    rows = await reads.list_classifications(
        conn, namespace=namespace, dataset=dataset, field=None if masked else field
    )
    if rows is None:
        raise Problem("not-found", f"dataset {dataset!r} in namespace {namespace!r} not found")
    if masked:
        sensitive = {r["field"] for r in rows if r["field"] is not None and r["status"] == "pii"}
        rows = redact_classifications(rows, namespace, dataset, sensitive)
        rows = [r for r in rows if field is None or r["field"] == field]
    return {"classifications": await _paths_as_seen(request, rows)}


async def _paths_as_seen(request: Request, rows: list[Json]) -> list[Json]:
    """Propagation paths cross datasets: a hop through a column the caller may not see (another
    product's, unless granted; one a masked-columns-only grant redacts) shows as its dataset only —
    the rule of the lineage reads (catalog/policy/authoriser.py `ColumnsView`)."""
    view = await authoriser_of(request).columns_view(None, [r.get("path") for r in rows])
    return [{**r, "path": view(r["path"])} if r.get("path") else r for r in rows]


@router.get(
    "/classifications/decisions",
    summary="Stewards' classification decisions",
    description="With `namespace` and `dataset`, that dataset's internals are needed (403 otherwise). "
    "Otherwise the list holds only decisions on datasets whose internals the caller may read (its own "
    "product's, granted ones, unowned ones; auditors and admins: all); through a masked-columns-only "
    "grant, decisions on the columns holding unmasked PII are left out. `totalCount` counts what is shown.",
    responses=ERRORS,
)
async def list_decisions(
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.internals", "read", "query-dataset")],
    namespace: Annotated[Name | None, Query()] = None,
    dataset: Annotated[Name | None, Query()] = None,
    include_retired: Annotated[bool, Query(alias="includeRetired")] = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Json:
    if authoriser_of(request).allowed_everywhere():
        rows, total = await decisions.list_decisions(
            conn,
            namespace=namespace,
            dataset=dataset,
            include_retired=include_retired,
            limit=limit,
            offset=offset,
        )
        return {"decisions": rows, "totalCount": total}
    # Another product's decisions are its classifications: internals. Filtered set-based (one statement
    # for the products of every dataset involved), then paged.
    everything, _count = await decisions.list_decisions(
        conn, namespace=namespace, dataset=dataset, include_retired=include_retired, limit=sys.maxsize
    )
    scope = await authoriser_of(request).internals_scope(
        None, [(r["namespace"], r["dataset"]) for r in everything]
    )
    shown = [r for r in everything if _visible(r, scope)]
    return {"decisions": shown[offset : offset + limit], "totalCount": len(shown)}


@router.post(
    "/classifications/decisions",
    status_code=201,
    summary="Add, confirm or reject a classification (re-propagates downstream)",
    responses=ERRORS,
)
async def record_decision(
    body: DecisionIn,
    conn: WriteConn,
    principal: Annotated[Principal, Requires("classification", "write", "body-dataset", body=DecisionIn)],
) -> Json:
    try:
        return await decisions.record_decision(
            conn,
            namespace=body.namespace,
            dataset=body.dataset,
            field=body.field,
            tag=body.tag,
            action=body.action,
            reason=body.reason,
            author=decisions.decision_author(principal),
        )
    except (decisions.DatasetNotFound, decisions.FieldNotFound) as exc:
        raise Problem("not-found", str(exc)) from exc
    except decisions.InvalidDecision as exc:
        raise Problem("invalid-parameter", str(exc), pointer=exc.field) from exc


@router.delete(
    "/classifications/decisions/{decision_id}",
    summary="Withdraw a decision (kept for audit; re-propagates downstream)",
    responses=ERRORS,
)
async def retire_decision(
    decision_id: int,
    conn: WriteConn,
    principal: Annotated[Principal, Requires("classification", "write", "decision")],
) -> Json:
    try:
        return await decisions.retire_decision(
            conn, decision_id=decision_id, author=decisions.decision_author(principal)
        )
    except decisions.DecisionNotFound as exc:
        raise Problem("not-found", str(exc)) from exc


@router.get(
    "/pii/inventory",
    summary="Every field holding PII (effective, unmasked)",
    description="With `product`, that product's internals are needed (403 otherwise). In any case the "
    "inventory holds only fields of datasets whose internals the caller may read (as GraphQL "
    "`piiInventory`); through a masked-columns-only grant the dataset's unmasked PII columns are "
    "redacted, i.e. left out. `totalCount` counts what is shown.",
    responses=ERRORS,
)
async def pii_inventory(
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.internals", "read", "product")],
    namespace: Annotated[Name | None, Query()] = None,
    product: Annotated[
        Name | None,
        Query(description="Only datasets of this product (stored assignment, else products.yaml)."),
    ] = None,
    tier: Annotated[
        Name | None,
        Query(description="Only datasets whose namespace is in this tier (oltp, stream, analytics, ...)."),
    ] = None,
    as_of: Annotated[
        dt.datetime | None,
        Query(alias="asOf", description="The inventory as it stood at this instant (UTC when no offset)."),
    ] = None,
    limit: Limit = 1000,
    offset: Offset = 0,
) -> Json:
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=dt.UTC)
    authoriser = authoriser_of(request)
    everywhere = authoriser.allowed_everywhere()
    rows, total = await reads.pii_inventory(
        conn,
        namespace=namespace,
        product=product,
        tier=tier,
        as_of=as_of,
        products=authoriser.products,
        limit=limit if everywhere else sys.maxsize,
        offset=offset if everywhere else 0,
        paths=everywhere,
    )
    if everywhere:
        return {"fields": rows, "totalCount": total}
    # Fields of datasets the caller may not read are left out (GraphQL piiInventory's rule).
    scope = await authoriser.internals_scope(None, [(r["namespace"], r["dataset"]) for r in rows])
    shown = [r for r in rows if _visible(r, scope)]
    return {
        "fields": await _paths_as_seen(request, await reads.with_paths(conn, shown[offset : offset + limit])),
        "totalCount": len(shown),
    }


def _visible(column: Json, scope: InternalsScope) -> bool:
    """May the caller see this (namespace, dataset, field) row: its dataset's internals are readable
    and the column is not one a masked-columns-only grant redacts."""
    key = (column["namespace"], column["dataset"])
    if not scope.shows(key):
        return False
    return column["field"] is None or not is_redacted(column["field"], scope.sensitive(key))


@router.get(
    "/pii/flow",
    summary="Where a column's value goes, hop by hop, masking marked",
    description="Needs the origin dataset's internals (403 otherwise). Hops into or out of datasets whose "
    "internals the caller may not read are left out and counted in `omittedHops` (as GraphQL `piiFlow`), "
    "and so are hops into or out of columns a masked-columns-only grant redacts (their classifications "
    "too, the origin's included when it is such a column).",
    responses=ERRORS,
)
async def pii_flow(
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.internals", "read", "query-dataset")],
    namespace: Annotated[Name, Query(min_length=1)],
    dataset: Annotated[Name, Query(min_length=1)],
    field: Annotated[Name, Query(min_length=1)],
    depth: Annotated[
        int, Query(ge=1, le=lineage_service.MAX_DEPTH, description="Hops from the origin to show.")
    ] = flows.FLOW_DEPTH,
) -> Json:
    flow = await flows.pii_flow(conn, namespace=namespace, dataset=dataset, field=field, max_depth=depth)
    if flow is None:
        raise Problem("not-found", f"field {field!r} of {namespace!r}/{dataset!r} not found")
    hops: list[Json] = flow["hops"]
    ends = {(h[end]["namespace"], h[end]["dataset"]) for h in hops for end in ("from", "to")}
    scope = await authoriser_of(request).internals_scope(None, ends | {(namespace, dataset)})
    shown = [h for h in hops if _visible(h["from"], scope) and _visible(h["to"], scope)]
    origin = flow["origin"]
    if not _visible(origin, scope):
        origin = {**origin, "classifications": []}
    # The classifications' propagation paths name columns further upstream: the same rule, per hop.
    view = await authoriser_of(request).columns_view(None, [origin, shown])
    return {"origin": view(origin), "hops": view(shown), "omittedHops": len(hops) - len(shown)}
