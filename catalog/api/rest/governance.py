"""Findings (list, per dataset/job, summary, waive/unwaive), grants, and the policy's own endpoints."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import unquote

from fastapi import APIRouter, Path, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.api.casing import camel_keys
from catalog.api.rest.deps import ReadConn, WriteConn, begin_write
from catalog.api.rest.inputs import InputModel
from catalog.api.rest.problems import Problem, problem_responses
from catalog.api.rest.requires import Requires, authoriser_of
from catalog.auth.service import Principal
from catalog.db.engine import driver_connection
from catalog.findings import service as findings
from catalog.findings.rules import RULE_NAMES
from catalog.findings.subjects import display
from catalog.metadata import queries
from catalog.policy import files as policy_files
from catalog.policy import grants as grant_service
from catalog.policy import service as policy_service
from catalog.policy.authoriser import ColumnsView
from catalog.policy.routes import ROUTES

router = APIRouter(prefix="/api/v1", tags=["governance"])

ERRORS = problem_responses(400, 401, 403, 404, 503)
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (at most 1000).")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip.")]
Namespace = Annotated[str, Path(description="Namespace name, URL-encoded."), AfterValidator(unquote)]
Name = Annotated[str, Path(description="Dataset or job name, URL-encoded."), AfterValidator(unquote)]
if TYPE_CHECKING:
    Rule = str
else:
    Rule = Literal[RULE_NAMES]  # the registry's rule names (catalog/findings/rules/)
Severity = Literal["low", "medium", "high", "critical"]
Status = Literal["open", "resolved", "waived"]
Json = dict[str, Any]


# -- answers: camelCase, as every other answer (the stored finding's keys are converted at the edge) ------


class FindingOut(BaseModel):
    """One finding. `subject` is `{kind, namespace, name, field?, job?: {namespace, name}, direction?}`;
    `evidence` is the rule's own (its keys camelCase too: `runId`, `eventTime`, `sourceProduct`, ...)."""

    model_config = ConfigDict(extra="allow")

    id: int
    rule: str
    severity: str
    status: str
    subjectKind: str
    subjectKey: str
    subject: dict[str, Any] = Field(default_factory=dict)
    subjectDisplay: str = Field("", description="The subject in words, from what the caller may see.")
    product: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    firstSeen: str = Field(json_schema_extra={"format": "date-time"})
    lastSeen: str = Field(json_schema_extra={"format": "date-time"})
    statusChangedAt: str | None = Field(None, json_schema_extra={"format": "date-time"})
    waivedBy: str | None = None
    waiverReason: str | None = None
    waivedUntil: str | None = Field(None, json_schema_extra={"format": "date-time"})
    datasetId: int | None = None
    jobId: int | None = None
    namespaceId: int | None = None


class FindingsPage(BaseModel):
    findings: list[FindingOut]
    totalCount: int


class ProductFindingsSummary(BaseModel):
    product: str | None
    status: dict[str, int] = Field(description="Findings by (effective) status.")
    openByRule: dict[str, int]
    openBySeverity: dict[str, int]


class FindingsSummaryOut(BaseModel):
    products: list[ProductFindingsSummary]


def _product_filter(request: Request, product: str | None, obj: str = "findings") -> str | None:
    """Callers see their own product's `obj` (findings, grants) unless they name another (which the
    enforcer has already judged); callers the policy lets read `obj` in every product (auditors,
    admins) see every product by default."""
    if product is not None:
        return product
    authoriser = authoriser_of(request)
    if authoriser.allowed_everywhere(obj):
        return None
    return authoriser.principal.product if authoriser.principal else None


def finding_as_seen(finding: Json, view: ColumnsView) -> Json:
    """A finding as the caller may see it: the lineage reads' per-dataset rule on every column it
    names (`ColumnsView`) — one of a dataset whose internals the caller may not read, or one a
    masked-columns-only grant redacts, shows as its dataset only; datasets and jobs by name, its rule,
    product and status are discoverable and stay."""
    seen = {**finding, "evidence": view(finding.get("evidence"))}
    subject = finding.get("subject")
    if isinstance(subject, dict):
        seen["subject"] = view(subject)
        seen["subject_display"] = display(seen["subject"])  # said again from what the caller may see
    return seen


async def _as_seen(request: Request, conn: Any, rows: list[Json]) -> list[Json]:
    """`finding_as_seen` over a page of findings, decided set-based for the whole page; then said in the
    API's camelCase (the visibility rule reads the stored keys, so the keys change after it)."""
    if not rows:
        return rows
    view = await authoriser_of(request).columns_view(
        conn, [[r.get("evidence"), r.get("subject")] for r in rows]
    )
    return [camel_keys(finding_as_seen(r, view)) for r in rows]


@router.get(
    "/findings",
    summary="Findings by product, rule, severity and status",
    responses=ERRORS,
    response_model=FindingsPage,
)
async def list_findings(
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("findings", "read", "product")],
    product: str | None = None,
    rule: Rule | None = None,
    severity: Severity | None = None,
    status: Status | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Json:
    where = findings.FindingFilter(
        product=_product_filter(request, product), rule=rule, severity=severity, status=status
    )
    rows, total = await findings.list_findings(conn, where=where, limit=limit, offset=offset)
    return {"findings": await _as_seen(request, conn, rows), "totalCount": total}


@router.get(
    "/findings/summary",
    summary="Counts per product: by status, open by rule and severity",
    responses=ERRORS,
    response_model=FindingsSummaryOut,
)
async def findings_summary(
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("findings", "read", "product")],
    product: str | None = None,
) -> Json:
    return {"products": camel_keys(await findings.summary(conn, product=_product_filter(request, product)))}


@router.get(
    "/findings/{finding_id}",
    summary="One finding with its evidence",
    responses=ERRORS,
    response_model=FindingOut,
)
async def get_finding(
    finding_id: int,
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("findings", "read", "finding")],
) -> Json:
    found = await findings.get_finding(conn, finding_id)
    if found is None:
        raise Problem("not-found", f"finding {finding_id} not found")
    return (await _as_seen(request, conn, [found]))[0]


async def _subject_id(
    conn: AsyncConnection, kind: Literal["dataset", "job"], namespace: str, name: str
) -> int:
    found = await queries.subject_id(conn, kind, namespace, name)
    if found is None:
        raise Problem("not-found", f"{kind} {name!r} in namespace {namespace!r} not found")
    return found


@router.get(
    "/findings/datasets/{namespace}/{dataset:path}",
    summary="Findings about a dataset",
    responses=ERRORS,
    response_model=FindingsPage,
)
async def dataset_findings(
    namespace: Namespace,
    dataset: Name,
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("findings", "read", "dataset")],
    status: Status | None = None,
) -> Json:
    dataset_id = await _subject_id(conn, "dataset", namespace, dataset)
    rows, total = await findings.list_findings(
        conn, where=findings.FindingFilter(dataset_id=dataset_id, status=status), limit=1000
    )
    return {"findings": await _as_seen(request, conn, rows), "totalCount": total}


@router.get(
    "/findings/jobs/{namespace}/{job:path}",
    summary="Findings about a job",
    responses=ERRORS,
    response_model=FindingsPage,
)
async def job_findings(
    namespace: Namespace,
    job: Name,
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("findings", "read", "job")],
    status: Status | None = None,
) -> Json:
    job_id = await _subject_id(conn, "job", namespace, job)
    rows, total = await findings.list_findings(
        conn, where=findings.FindingFilter(job_id=job_id, status=status), limit=1000
    )
    return {"findings": await _as_seen(request, conn, rows), "totalCount": total}


class WaiverIn(InputModel):
    reason: str = Field(min_length=3, max_length=2000, description="Why the finding is accepted.")
    until: dt.datetime | None = Field(None, description="When the waiver lapses (the finding reopens).")


class UnwaiveIn(InputModel):
    reason: str | None = Field(None, max_length=2000)


@router.post(
    "/findings/{finding_id}/waive",
    summary="Waive a finding (steward of its product)",
    responses=ERRORS,
    response_model=FindingOut,
)
async def waive_finding(
    finding_id: int,
    body: WaiverIn,
    request: Request,
    principal: Annotated[Principal, Requires("finding", "waive", "finding")],
    conn: WriteConn,
) -> Json:
    if body.until is not None and body.until.tzinfo is None:
        raise Problem("invalid-parameter", "until needs a time zone", pointer="until")
    if body.until is not None and body.until <= dt.datetime.now(dt.UTC):
        raise Problem("invalid-parameter", "until is in the past", pointer="until")
    try:
        waived = await findings.waive(
            conn, finding_id=finding_id, actor=principal.key_id, reason=body.reason, until=body.until
        )
    except findings.FindingNotFound:
        raise Problem("not-found", f"finding {finding_id} not found") from None
    await conn.commit()
    # Shown once committed: deciding what the caller may see can record a denial, an audit append that
    # would wait for the chain's append lock this transaction holds until it commits.
    return (await _as_seen(request, None, [waived]))[0]


@router.post(
    "/findings/{finding_id}/unwaive", summary="Lift a waiver", responses=ERRORS, response_model=FindingOut
)
async def unwaive_finding(
    finding_id: int,
    body: UnwaiveIn,
    request: Request,
    principal: Annotated[Principal, Requires("finding", "waive", "finding")],
    conn: WriteConn,
) -> Json:
    try:
        unwaived = await findings.unwaive(
            conn, finding_id=finding_id, actor=principal.key_id, reason=body.reason
        )
    except findings.FindingNotFound:
        raise Problem("not-found", f"finding {finding_id} not found") from None
    await conn.commit()
    # Shown once committed: deciding what the caller may see can record a denial, an audit append that
    # would wait for the chain's append lock this transaction holds until it commits.
    return (await _as_seen(request, None, [unwaived]))[0]


class GrantIn(InputModel):
    grantee_product: str = Field(min_length=1, max_length=200, description="The product that may read.")
    scope: Literal["dataset", "namespace", "pattern"]
    namespace: str = Field(
        min_length=1,
        max_length=1024,
        description="The namespace: exactly (`dataset`, `namespace`: not namespaces it is a prefix of), or a "
        "glob for `pattern` (`*`/`?` stay within a `/`- or `:`-separated segment, `**` crosses them).",
    )
    name: str | None = Field(
        None,
        max_length=1024,
        description="The dataset (`dataset`), or a glob for `pattern` (absent: every dataset of the namespaces).",
    )
    masked_only: bool = Field(False, description="Only masked columns may be read.")
    reason: str = Field(min_length=3, max_length=2000)
    expires_at: dt.datetime | None = None
    grantor_product: str | None = Field(
        None, description="The owning product (default: the caller's own product)."
    )


@router.post("/grants", status_code=201, summary="Grant another product read access", responses=ERRORS)
async def create_grant(
    body: GrantIn,
    request: Request,
    principal: Annotated[Principal, Requires("grants", "write", "own")],
    conn: WriteConn,
) -> Json:
    grantor = body.grantor_product or principal.product
    if grantor is None:
        raise Problem("invalid-parameter", "grantorProduct is required for a key without a product")
    if body.expires_at is not None and body.expires_at.tzinfo is None:
        raise Problem("invalid-parameter", "expiresAt needs a time zone", pointer="expiresAt")
    await authoriser_of(request).require("grants", "write", grantor)
    new = grant_service.NewGrant(
        grantor_product=grantor,
        grantee_product=body.grantee_product,
        scope=body.scope,
        namespace=body.namespace,
        name=body.name,
        masked_only=body.masked_only,
        reason=body.reason,
        expires_at=body.expires_at,
    )
    try:
        created = await grant_service.create_grant(conn, new, actor=principal.key_id)
    except grant_service.InvalidGrant as exc:
        raise Problem("invalid-parameter", str(exc)) from None
    await conn.commit()  # the grant is enforced (and flows re-judged) once committed
    await _after_grant_change(request, grantor)
    return camel_keys(created)  # type: ignore[no-any-return]


@router.delete("/grants/{grant_id}", summary="Revoke a grant", responses=ERRORS)
async def revoke_grant(
    grant_id: int,
    request: Request,
    principal: Annotated[Principal, Requires("grants", "write", "grant")],
    conn: WriteConn,
) -> Json:
    revoked = await grant_service.revoke_grant(conn, grant_id=grant_id, actor=principal.key_id)
    await conn.commit()  # the revocation is enforced (and flows re-judged) once committed
    if revoked is None:
        raise Problem("not-found", f"no live grant {grant_id}")
    await _after_grant_change(request, revoked["grantor_product"])
    return camel_keys(revoked)  # type: ignore[no-any-return]


async def _after_grant_change(request: Request, grantor: str) -> None:
    """This process enforces the change at once (others within their poll interval); flows crossing
    into the grantor's datasets are re-judged, in a transaction of their own: the judgement reads the
    enforcer, which knows the change only once it is committed and the watcher has read it."""
    from catalog.findings.service import reevaluate_flows_of
    from catalog.policy.grants import GrantWatcher

    watcher = GrantWatcher(request.app.state.engine, request.app.state.enforcer)
    await watcher.refresh(force=True)
    async with begin_write(request) as conn:
        # The findings service takes asyncpg (its set-based SQL); the transaction is still this one.
        await reevaluate_flows_of(await driver_connection(conn), request.app.state.policies, product=grantor)


@router.get("/grants", summary="Grants given or received by a product", responses=ERRORS)
async def list_grants(
    request: Request,
    conn: ReadConn,
    _: Annotated[Principal, Requires("grants", "read", "product")],
    product: str | None = None,
    include_revoked: Annotated[bool, Query(alias="includeRevoked")] = False,
) -> Json:
    rows = await grant_service.list_grants(
        conn, product=_product_filter(request, product, "grants"), include_revoked=include_revoked
    )
    return {"grants": camel_keys(rows)}


@router.get(
    "/policy/products", summary="The product map: products, and how a name resolves", responses=ERRORS
)
async def products(
    request: Request,
    _: Annotated[Principal, Requires("policy.products", "read")],
    namespace: str | None = None,
    name: str | None = None,
    kind: Literal["dataset", "job"] = "dataset",
) -> Json:
    current = request.app.state.enforcer.products.current
    out: Json = {"products": sorted(current.products)}
    if namespace is not None:
        a = current.assign(kind, namespace, name)
        out["resolved"] = {
            "product": a.product,
            "tier": a.tier,
            "source": a.source,
            "candidates": [{"source": s, "product": p} for s, p in a.candidates],
            "conflict": a.conflict,
        }
    return out


@router.get(
    "/policy/discover",
    summary="Discover datasets by name, owner and product (no columns: those need a grant)",
    responses=ERRORS,
)
async def discover(
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.discover", "read", "product")],
    product: str | None = None,
    q: Annotated[str | None, Query(max_length=200, description="Substring of the dataset name.")] = None,
    owner: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Json:
    rows = await queries.discover_datasets(
        conn, product=product, contains=q, owner=owner, limit=limit, offset=offset
    )
    return {"datasets": [dataclasses.asdict(r) for r in rows]}


@router.post(
    "/policy/reload",
    summary="Re-read products.yaml, policy.csv and classification.yaml now (admin)",
    responses=ERRORS,
)
async def reload_policy(
    request: Request, principal: Annotated[Principal, Requires("policy", "write")], conn: WriteConn
) -> Json:
    enforcer, policies = request.app.state.enforcer, request.app.state.policies
    try:
        policies.products.reload()
        enforcer.rebuild()
        # The PII name rules the next ingest batch applies; columns already classified keep their
        # detections until they are seen again or the projection is rebuilt.
        classification = policies.classification.reload()
        policies.rules.reload()
    except (OSError, ValueError) as exc:
        raise Problem("invalid-body", f"the policy files are invalid: {exc}", status=422) from None
    products = sorted(enforcer.products.current.products)
    await policy_files.record_policy_reload(
        conn, policies.directory, actor=principal.key_id, products=products
    )
    return {"products": products, "routes": len(ROUTES), "classificationRules": len(classification.rules)}


@router.get(
    "/policy/denials", summary="Recorded access denials, newest first (auditor, admin)", responses=ERRORS
)
async def denials(
    conn: ReadConn,
    _: Annotated[Principal, Requires("policy.denials", "read")],
    limit: Limit = 100,
    offset: Offset = 0,
) -> Json:
    return {"denials": await policy_service.list_denials(conn, limit=limit, offset=offset)}
