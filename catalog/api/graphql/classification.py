"""PII classifications in GraphQL: the classifications of a field, the PII inventory and PII flows.

Classifications are a dataset's internals (`catalog.internals`, see authz.py): `DatasetField.classifications`
and `Dataset.hasPii` are checked like `Dataset.fields`; `piiFlow` needs the origin dataset's internals
(null with a FORBIDDEN error otherwise) and leaves out the hops into or out of datasets the caller may not
read (counted in `omittedHops`); `piiInventory(product)` needs that product's internals, as REST's
`GET /api/v1/pii/inventory?product=` does, and without `product` leaves out the fields of datasets the
caller may not read. Through a masked-columns-only grant the redacted columns (catalog/policy/masking.py)
are left out of both: their inventory rows, and the flow's hops into or out of them (also counted).
Everything is read through catalog.classification (reads, flow), the code REST uses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.api.graphql.context import GraphQLContext
from catalog.classification import flow as flows
from catalog.classification import reads
from catalog.policy.masking import is_redacted

if TYPE_CHECKING:
    from catalog.api.graphql.types import PageInfo

Info = strawberry.Info[GraphQLContext, None]
Json = dict[str, Any]


@strawberry.enum(
    description="Where a classification comes from (precedence: manual > declared > detected > propagated)."
)
class ClassificationSource(enum.Enum):
    MANUAL = "manual"
    DECLARED = "declared"
    DETECTED = "detected"
    PROPAGATED = "propagated"


@strawberry.enum(
    description="PII: the field holds the value; MASKED: a masked derivative of it, not PII itself."
)
class ClassificationStatus(enum.Enum):
    PII = "pii"
    MASKED = "masked"


@strawberry.type(description="An effective classification of a field (or of a whole dataset).")
class Classification:
    tag: str = strawberry.field(description="PII.* or PCI.*, e.g. PII.CPF.")
    source: ClassificationSource
    category: str | None
    confidence: float
    status: ClassificationStatus
    depth: int = strawberry.field(
        description="Hops from the nearest classified origin (0 unless propagated)."
    )
    path: list[str] | None = strawberry.field(
        description="For a propagated classification, the columns it came by as `namespace/dataset#field`, "
        "origin first and this field last."
    )
    rule: str | None = strawberry.field(description="The detection rule, or the steward's action.")

    @classmethod
    def of(cls, item: Json) -> Classification:
        return cls(
            tag=item["tag"],
            source=ClassificationSource(item["source"]),
            category=item.get("category"),
            confidence=float(item["confidence"]),
            status=ClassificationStatus(item["status"]),
            depth=int(item.get("depth") or 0),
            path=item.get("path"),
            rule=item.get("rule"),
        )


async def classifications_of_datasets(
    conn: AsyncConnection, dataset_ids: Sequence[int]
) -> dict[int, list[Json]]:
    """The DataLoader batch: effective classifications of many datasets in a fixed number of statements
    (one, plus one for the paths of propagated rows), on the request's connection and snapshot."""
    return await reads.classifications_for_datasets(conn, dataset_ids)


# -- inventory ------------------------------------------------------------------------------------------


@strawberry.type(
    description="A field holding PII (effective, unmasked), with its dataset's product and tier."
)
class PiiField:
    namespace: str
    dataset: str
    field: str | None = strawberry.field(description="Null for a tag on the whole dataset.")
    product: str | None
    tier: str | None
    classification: Classification


@strawberry.type(description="A page of the PII inventory, ordered by namespace, dataset, field and tag.")
class PiiInventoryPage:
    nodes: list[PiiField]
    page_info: Annotated[PageInfo, strawberry.lazy("catalog.api.graphql.types")]
    total_count: int = strawberry.field(description="Fields in the whole inventory (all pages).")


async def pii_inventory(
    info: Info,
    *,
    product: str | None,
    tier: str | None,
    as_of: dt.datetime | None,
    first: int,
    offset: int,
) -> tuple[list[PiiField], int]:
    """One page of the inventory the caller may read (from `offset`) and the size of all of it."""
    authz = info.context.authz
    if product is not None:
        await authz.require_product(product)
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=dt.UTC)
    async with info.context.db.use() as conn:
        items, _ = await reads.pii_inventory(
            conn,
            product=product,
            tier=tier,
            as_of=as_of,
            products=authz.products,
            limit=sys.maxsize,
            paths=False,
        )
    datasets = sorted({(i["namespace"], i["dataset"]) for i in items})
    verdicts = await asyncio.gather(*(authz.allows("dataset", ns, ds) for ns, ds in datasets))
    hidden = {key for key, ok in zip(datasets, verdicts, strict=True) if not ok}
    # Through a masked-columns-only grant the dataset's unmasked PII columns are redacted: left out.
    shown = [key for key in datasets if key not in hidden]
    sets = await asyncio.gather(*(authz.redacted_columns(ns, ds) for ns, ds in shown))
    redacted = dict(zip(shown, sets, strict=True))
    readable = [
        i
        for i in items
        if (i["namespace"], i["dataset"]) not in hidden
        and not (
            i["field"] is not None
            and is_redacted(i["field"], redacted.get((i["namespace"], i["dataset"]), frozenset()))
        )
    ]
    async with info.context.db.use() as conn:
        page = await reads.with_paths(conn, readable[offset : offset + first])
    # Propagation paths cross datasets: hops the caller may not see show as their dataset (REST's rule).
    page = await authz.columns_as_seen(page)
    nodes = [
        PiiField(
            namespace=i["namespace"],
            dataset=i["dataset"],
            field=i["field"],
            product=i["product"],
            tier=i["tier"],
            classification=Classification.of(i),
        )
        for i in page
    ]
    return nodes, len(readable)


# -- flow -----------------------------------------------------------------------------------------------


@strawberry.enum(description="What an edge does to the value of the column it leaves.")
class FlowEffect(enum.Enum):
    CARRIES = "carries"
    MASKED = "masked"
    AGGREGATED = "aggregated"
    INFLUENCES = "influences"
    DOES_NOT_CARRY = "does-not-carry"


@strawberry.type(description="A column by its dataset's namespace and name and its dotted path.")
class ColumnRef:
    namespace: str
    dataset: str
    field: str | None


@strawberry.type(description="A job by namespace and name.")
class JobRef:
    namespace: str | None
    name: str


@strawberry.type(description="The OpenLineage transformation of a column edge.")
class FlowTransformation:
    type: str = strawberry.field(description="DIRECT or INDIRECT.")
    subtype: str | None = strawberry.field(description="IDENTITY, TRANSFORMATION, AGGREGATION, JOIN, ...")
    masking: bool


@strawberry.type(
    description="One edge of a PII flow. CARRIES and MASKED edges are followed further; MASKED ones are "
    "masking points (the value continues as a masked derivative). AGGREGATED and INFLUENCES (INDIRECT: "
    "join keys, filters — the target is 'influenced by' the column) are shown but not followed."
)
class PiiFlowHop:
    depth: int = strawberry.field(description="Hops from the origin column (1: an edge out of it).")
    from_: ColumnRef = strawberry.field(name="from")
    to: ColumnRef
    job: JobRef | None
    transformation: FlowTransformation
    effect: FlowEffect
    masking_point: bool
    target_classifications: list[Classification]


@strawberry.type(description="Where a column's value goes, hop by hop (breadth-first from the origin).")
class PiiFlow:
    origin: ColumnRef
    classifications: list[Classification] = strawberry.field(description="The origin's classifications.")
    hops: list[PiiFlowHop]
    omitted_hops: int = strawberry.field(
        description="Hops left out because they go into or out of datasets the caller may not read."
    )


def _column(ref: Json) -> ColumnRef:
    return ColumnRef(namespace=ref["namespace"], dataset=ref["dataset"], field=ref["field"])


def _hop(hop: Json) -> PiiFlowHop:
    job, transformation = hop["job"], hop["transformation"]
    return PiiFlowHop(
        depth=hop["depth"],
        from_=_column(hop["from"]),
        to=_column(hop["to"]),
        job=JobRef(namespace=job["namespace"], name=job["name"]) if job else None,
        transformation=FlowTransformation(
            type=transformation["type"], subtype=transformation["subtype"], masking=transformation["masking"]
        ),
        effect=FlowEffect(hop["effect"]),
        masking_point=hop["maskingPoint"],
        target_classifications=[Classification.of(c) for c in hop["targetClassifications"]],
    )


async def pii_flow(info: Info, *, namespace: str, dataset: str, field: str, depth: int) -> PiiFlow | None:
    authz = info.context.authz
    await authz.require_read("dataset", namespace, dataset)
    async with info.context.db.use() as conn:
        flow = await flows.pii_flow(conn, namespace=namespace, dataset=dataset, field=field, max_depth=depth)
    if flow is None:
        return None
    ends = sorted({(h[end]["namespace"], h[end]["dataset"]) for h in flow["hops"] for end in ("from", "to")})
    verdicts = await asyncio.gather(*(authz.allows("dataset", ns, ds) for ns, ds in ends))
    hidden = {key for key, ok in zip(ends, verdicts, strict=True) if not ok}
    # Through a masked-columns-only grant, hops into or out of redacted columns are left out too.
    readable = [key for key in ends if key not in hidden]
    sets = await asyncio.gather(*(authz.redacted_columns(ns, ds) for ns, ds in readable))
    redacted = dict(zip(readable, sets, strict=True))

    def visible(ref: Json) -> bool:
        key = (ref["namespace"], ref["dataset"])
        if key in hidden:
            return False
        return ref["field"] is None or not is_redacted(ref["field"], redacted.get(key, frozenset()))

    shown = [h for h in flow["hops"] if visible(h["from"]) and visible(h["to"])]
    # The classifications' propagation paths name columns further upstream: the same rule, per hop.
    origin, shown = await authz.columns_as_seen([flow["origin"], shown])
    own = await authz.redacted_columns(namespace, dataset)
    origin_hidden = is_redacted(field, own)
    return PiiFlow(
        origin=_column(origin),
        classifications=[] if origin_hidden else [Classification.of(c) for c in origin["classifications"]],
        hops=[_hop(h) for h in shown],
        omitted_hops=len(flow["hops"]) - len(shown),
    )
