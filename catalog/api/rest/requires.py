"""What a REST route needs, declared in its signature: `principal: Annotated[Principal, Requires(obj, act,
domain)]`, decided by the request's `Authoriser` (catalog/policy/authoriser.py).

The domain names where the product of the request comes from (catalog/policy/routes.py lists them,
and tests/policy/test_matrix.py checks every route's declaration against that table). It is taken from
the route's own parameters as FastAPI parses them for the handler: each finder declares the path/query/
body parameters it reads under the handler's names (FastAPI validates them like the handler's and shows
each once in the OpenAPI document), nothing re-reads the raw request. Authentication runs first (401),
then the finder, then the decision: a denial answers 403 problem+json naming the rule (problems.py) and
is recorded once in `access_denials`.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import AfterValidator, BaseModel
from starlette.routing import BaseRoute

from catalog.api.rest.deps import bearer, require_principal
from catalog.api.rest.problems import Problem
from catalog.auth.service import Principal
from catalog.classification.service import unmasked_pii_columns
from catalog.findings.service import finding_product
from catalog.lineage.service import resolve_dataset_paths, resolve_node_id
from catalog.policy.authoriser import Authoriser, Lookups
from catalog.policy.enforcer import GLOBAL, UNOWNED, dataset_object
from catalog.policy.grants import grant_product
from catalog.policy.routes import DomainSource, RoutePolicy
from catalog.policy.scopes import DatasetRef

# The reads of other domains' tables the authoriser needs (REST and GraphQL hand in the same ones).
LOOKUPS = Lookups(pii_columns=unmasked_pii_columns, dataset_paths=resolve_dataset_paths, node=resolve_node_id)


def _authoriser_for(request: Request, principal: Principal) -> Authoriser:
    """The request's one Authoriser, made by whichever dependency asks first."""
    authoriser: Authoriser | None = getattr(request.state, "authoriser", None)
    if authoriser is None:
        authoriser = Authoriser(
            principal=principal,
            enforcer=request.app.state.enforcer,
            engine=request.app.state.engine,
            # The path as routed, not `request.url.path`: Starlette builds a whole URL for that (the host
            # header parsed, urlsplit), 3 % of a single-event ingest's CPU, for a denial's record.
            path=request.scope["path"],
            lookups=LOOKUPS,
        )
        request.state.authoriser = authoriser
    return authoriser


async def request_authoriser(
    request: Request, principal: Annotated[Principal, Depends(require_principal)]
) -> Authoriser:
    return _authoriser_for(request, principal)


AuthoriserDep = Annotated[Authoriser, Depends(request_authoriser)]

# Path and query parameters as the handlers declare them (left out of the OpenAPI document here: the
# handler's own declaration, with its description and limits, is the one shown).
PathName = Annotated[str, Path(include_in_schema=False), AfterValidator(unquote)]
QueryText = Annotated[str | None, Query(include_in_schema=False)]
Domain = tuple[str, DatasetRef | None]


def _no_nul(member: str, value: str) -> None:
    if "\x00" in value:  # PostgreSQL text cannot carry NUL: a 400 naming the field, not a 500
        raise Problem("invalid-parameter", f"{member}: must not contain NUL", status=400, pointer=member)


# The domains read off the principal alone. Their routes (ingest among them: the hot path) get the
# whole check as ONE dependency instead of a tree of four: FastAPI's solving costs per dependency per
# request, and it was ~15 % of a single-event ingest's CPU (py-spy, `bench/ingest.py` single phase).
_PRINCIPAL_ONLY: dict[DomainSource, Callable[[Authoriser], str]] = {
    "global": lambda _authoriser: GLOBAL,
    "own": lambda authoriser: authoriser.own_product(),
}


# One finder per other domain source: its signature declares the parameters it reads.
async def _product(authoriser: AuthoriserDep, product: QueryText = None) -> Domain:
    return product or authoriser.own_product(), None


async def _namespace(authoriser: AuthoriserDep, namespace: PathName) -> Domain:
    return authoriser.namespace_product(namespace), dataset_object(namespace, None)


async def _dataset(authoriser: AuthoriserDep, namespace: PathName, dataset: PathName) -> Domain:
    return await authoriser.dataset_product(namespace, dataset), dataset_object(namespace, dataset)


async def _job(authoriser: AuthoriserDep, namespace: PathName, job: PathName) -> Domain:
    return await authoriser.job_product(namespace, job), None


async def _run(
    authoriser: AuthoriserDep, run_id: Annotated[uuid.UUID, Path(include_in_schema=False)]
) -> Domain:
    return await authoriser.run_product(run_id), None


async def _node(
    authoriser: AuthoriserDep,
    node_id: Annotated[str | None, Query(alias="nodeId", include_in_schema=False)] = None,
) -> Domain:
    return await authoriser.node_domain(node_id)


async def _query_dataset(
    authoriser: AuthoriserDep, namespace: QueryText = None, dataset: QueryText = None
) -> Domain:
    """The dataset named by the `namespace` + `dataset` query parameters, else the caller's product."""
    if not namespace or not dataset:
        return authoriser.own_product(), None
    _no_nul("namespace", namespace)
    _no_nul("dataset", dataset)
    return await authoriser.dataset_product(namespace, dataset), dataset_object(namespace, dataset)


async def _decision(
    authoriser: AuthoriserDep, decision_id: Annotated[int, Path(include_in_schema=False)]
) -> Domain:
    found = await authoriser.decision_product(decision_id)
    return (found or authoriser.own_product()), None  # no such decision: the handler answers 404


async def _finding(
    authoriser: AuthoriserDep, finding_id: Annotated[int, Path(include_in_schema=False)]
) -> Domain:
    async with authoriser.engine.connect() as conn:
        exists, found = await finding_product(conn, finding_id)
    if not exists:
        raise Problem("not-found", "finding not found")
    return found or UNOWNED, None


async def _grant(
    authoriser: AuthoriserDep, grant_id: Annotated[int, Path(include_in_schema=False)]
) -> Domain:
    async with authoriser.engine.connect() as conn:
        exists, found = await grant_product(conn, grant_id)
    if not exists:
        raise Problem("not-found", "grant not found")
    return found or UNOWNED, None


def _body_dataset(model: type[BaseModel]) -> Callable[..., Awaitable[Domain]]:
    """The dataset named by the body's `namespace` + `dataset` members (the body as the handler gets it)."""

    async def find(authoriser: AuthoriserDep, body: Any) -> Domain:
        return await authoriser.dataset_product(body.namespace, body.dataset), None

    find.__signature__ = _signature(authoriser=AuthoriserDep, body=model)  # type: ignore[attr-defined]
    return find


def _signature(**annotations: Any) -> inspect.Signature:
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(n, kind, annotation=a) for n, a in annotations.items()])


FINDERS: dict[DomainSource, Callable[..., Awaitable[Domain]]] = {  # and _PRINCIPAL_ONLY's two
    "product": _product,
    "namespace": _namespace,
    "dataset": _dataset,
    "job": _job,
    "run": _run,
    "node": _node,
    "query-dataset": _query_dataset,
    "decision": _decision,
    "finding": _finding,
    "grant": _grant,
}


def Requires(
    obj: str, act: str, domain: DomainSource = "global", *, body: type[BaseModel] | None = None
) -> Any:
    """The dependency of a route needing `act` on `obj` in the product `domain` names; it gives the
    principal. `body`: the request model whose `namespace`/`dataset` name the dataset (`body-dataset`)."""
    policy = RoutePolicy(obj, act, domain)
    if (product_of := _PRINCIPAL_ONLY.get(domain)) is not None:

        async def requires_principal_only(
            request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
        ) -> Principal:
            principal = await require_principal(request, credentials)
            authoriser = _authoriser_for(request, principal)
            authoriser.route_decision = await authoriser.require(
                policy.obj, policy.act, product_of(authoriser), resource=None
            )
            return principal

        requires_principal_only.route_policy = policy  # type: ignore[attr-defined]
        # It authenticates by calling require_principal itself (tests/auth/test_api_keys.py reads this).
        requires_principal_only.authenticates = require_principal  # type: ignore[attr-defined]
        return Depends(requires_principal_only)
    if domain == "body-dataset":
        if body is None:
            raise TypeError("Requires(..., 'body-dataset') needs the body model")
        finder = _body_dataset(body)
    else:
        finder = FINDERS[domain]

    async def requires(authoriser: Authoriser, found: Domain) -> Principal:
        product, resource = found
        authoriser.route_decision = await authoriser.require(
            policy.obj, policy.act, product, resource=resource
        )
        assert authoriser.principal is not None  # require_principal authenticated it
        return authoriser.principal

    # Spelled out: the finder is a local, which FastAPI cannot resolve from a string annotation.
    requires.__signature__ = _signature(  # type: ignore[attr-defined]
        authoriser=AuthoriserDep, found=Annotated[Domain, Depends(finder)]
    )

    requires.route_policy = policy  # type: ignore[attr-defined]  # read by the route-table test
    return Depends(requires)


def declared_policies(dependency: Any) -> list[RoutePolicy]:
    """The `Requires` declarations in a route's dependency tree (`route.dependant`)."""
    found: list[RoutePolicy] = []
    for sub in getattr(dependency, "dependencies", ()):
        policy = getattr(sub.call, "route_policy", None)
        if policy is not None:
            found.append(policy)
        found.extend(declared_policies(sub))
    return found


def authoriser_of(request: Request) -> Authoriser:
    """The request's Authoriser, for a handler's decisions over its results (internals scope,
    redactions, hidden jobs); `Requires` made it before the handler ran."""
    authoriser: Authoriser = request.state.authoriser
    return authoriser


def iter_routes(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route with its full path, through FastAPI's included routers (0.16x keeps them nested)."""
    try:
        from fastapi.routing import _iter_included_route_candidates
    except ImportError:  # older FastAPI flattens included routers into app.routes
        yield from routes
        return
    yield from _iter_included_route_candidates(routes)


def route_methods(route: BaseRoute) -> list[str]:
    methods = getattr(route, "methods", None)
    if methods:
        return sorted(m for m in methods if m != "HEAD")
    return ["WEBSOCKET"] if type(route).__name__ == "APIWebSocketRoute" else []
