"""GraphQL at /graphql (strawberry): the engineers' catalog and lineage explorer, with GraphiQL served
from vendored assets (no CDN). Authentication is the REST API's: `Authorization: Bearer <key>`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import cast

import orjson
from fastapi import FastAPI, Request, WebSocketException
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import HTTPConnection
from starlette.status import WS_1008_POLICY_VIOLATION
from strawberry.fastapi import GraphQLRouter

from catalog.api.consistency import mark_read_only, requested_lsn
from catalog.api.graphql.context import GraphQLContext, Limits, RequestDatabase
from catalog.api.graphql.loaders import Loaders
from catalog.api.graphql.schema import build_schema
from catalog.api.rest.deps import bearer, require_principal
from catalog.api.rest.problems import Problem
from catalog.api.rest.requires import LOOKUPS
from catalog.config import Settings
from catalog.db.replica import ReadRouter
from catalog.policy.authoriser import Authoriser
from catalog.policy.enforcer import GLOBAL

PATH = "/graphql"
STATIC_PATH = "/graphql/static"
STATIC_DIR = Path(__file__).with_name("static")

__all__ = ["Limits", "mount_graphql"]


class CatalogGraphQLRouter(GraphQLRouter[GraphQLContext, None]):
    """strawberry's router with our own GraphiQL page (local assets instead of a CDN)."""

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        static = request.scope.get("root_path", "") + STATIC_PATH
        return HTMLResponse(_graphiql_template().replace("{{STATIC}}", static))

    def decode_json(self, data: str | bytes) -> object:
        """A body that is not UTF-8 is a 400 (json.loads would raise UnicodeDecodeError: a 500)."""
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise Problem(
                    "invalid-json", f"the body is not valid UTF-8 (invalid byte at offset {exc.start})"
                ) from None
        return json.loads(data)

    def encode_json(self, data: object) -> bytes:
        """The response body through orjson: several times faster than json.dumps on a large answer
        (a lineage graph of thousands of nodes and edges). What orjson cannot encode (an integer past
        64 bits in a JSON facet) goes through json.dumps, as before."""
        try:
            return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # orjson.JSONEncodeError
            return json.dumps(data, separators=(",", ":")).encode()


@cache
def _graphiql_template() -> str:
    return (STATIC_DIR / "graphiql.html").read_text()


PATH = "/graphql"  # what access_denials.path holds for a GraphQL denial


def context_getter(limits: Limits) -> Callable[..., AsyncIterator[GraphQLContext]]:
    """A FastAPI dependency giving each request its context, and closing its connection afterwards."""

    async def get_context(connection: HTTPConnection) -> AsyncIterator[GraphQLContext]:
        if not isinstance(connection, Request):
            # No subscriptions: nothing is served over websockets.
            raise WebSocketException(WS_1008_POLICY_VIOLATION, "subscriptions are not supported")
        request = connection
        principal = None
        # GET only serves the GraphiQL page (queries over GET are refused), which holds no data and
        # is where a user types the key in; every POST (every query) needs a key, as REST does.
        if request.method != "GET":
            principal = await require_principal(request, await bearer(request))
        db = RequestDatabase(await _reader(request), timeout_seconds=limits.timeout_seconds)
        try:
            loaders = Loaders(db)
            authz = Authoriser(
                principal=principal,
                enforcer=request.app.state.enforcer,
                engine=request.app.state.engine,
                path=PATH,
                lookups=LOOKUPS,
                loaders=loaders,
            )
            if principal is not None:
                # The endpoint admits catalog users (routes.py); each field then decides on its own.
                await authz.require("graphql", "read", GLOBAL)
            yield GraphQLContext(principal=principal, db=db, loaders=loaders, limits=limits, authz=authz)
        finally:
            await db.close()

    return get_context


async def _reader(request: Request) -> Callable[[], Awaitable[AsyncConnection]]:
    """Where the request's resolvers read: the read router (a replica, no older than the request's
    Catalog-LSN) for a document of queries only; the primary for anything holding a mutation, so a
    mutation's answer shows its own write. A body we cannot parse goes to the primary and fails there."""
    engine: AsyncEngine = request.app.state.engine
    router: ReadRouter = request.app.state.read
    if not router.has_replica or request.method != "POST" or not await _only_queries(request):
        return engine.connect
    after = requested_lsn(request)
    mark_read_only(request)  # a query changes nothing: no Catalog-LSN to fetch for its answer
    return lambda: router.connect(after=after)


async def _only_queries(request: Request) -> bool:
    """Whether the operation(s) the body asks to run are all queries. Starlette keeps the body, so
    strawberry reads the same bytes afterwards; the document is parsed twice (microseconds)."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return False
    for item in body if isinstance(body, list) else [body]:
        if not isinstance(item, dict) or not isinstance(item.get("query"), str):
            return False
        try:
            document = parse(item["query"])
        except GraphQLError:
            return False
        name = item.get("operationName")
        operations = [
            d
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode) and (not name or (d.name and d.name.value == name))
        ]
        if not operations or any(op.operation is not OperationType.QUERY for op in operations):
            return False
    return True


def mount_graphql(app: FastAPI, settings: Settings) -> None:
    """Serve GraphQL (and GraphiQL) at /graphql and GraphiQL's assets under /graphql/static."""
    limits = Limits.from_settings(settings)
    router: CatalogGraphQLRouter = CatalogGraphQLRouter(
        build_schema(limits),
        path=PATH,
        # strawberry's annotation misses that FastAPI also accepts a yield dependency (which is
        # what lets the context close its connection when the request is done).
        context_getter=cast("Callable[..., GraphQLContext]", context_getter(limits)),
        allow_queries_via_get=False,
        subscription_protocols=(),
        # GraphQL describes itself (introspection); the OpenAPI document stays about REST.
        include_in_schema=False,
    )
    app.include_router(router, include_in_schema=False)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="graphql-static")
