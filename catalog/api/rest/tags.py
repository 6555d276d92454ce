"""Marquez-compatible tags: list and create tags, put them on and take them off datasets and fields.

Each write is one transaction (the write dependency) and answers the dataset as GET dataset's
versions and lineage nodes show it, its stewards' tags included.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Body, Path, Query
from pydantic import AfterValidator
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.api.rest.deps import ReadConn, WriteConn
from catalog.api.rest.problems import Problem, problem_responses
from catalog.api.rest.requires import Requires
from catalog.api.text import text_defect
from catalog.auth.service import Principal
from catalog.metadata import service as metadata
from catalog.tags import service as tags_service

router = APIRouter(prefix="/api/v1", tags=["lineage"])

ERRORS = problem_responses(400, 401, 403, 404, 503)
Json = dict[str, Any]

Namespace = Annotated[str, Path(description="Namespace name, URL-encoded."), AfterValidator(unquote)]
DatasetName = Annotated[str, Path(description="Dataset name, URL-encoded."), AfterValidator(unquote)]
FieldName = Annotated[str, Path(description="Field path, URL-encoded."), AfterValidator(unquote)]
TagName = Annotated[str, Path(min_length=1, max_length=255), AfterValidator(unquote)]


@router.get("/tags", summary="List tags", responses=ERRORS)
async def list_tags(
    conn: ReadConn,
    _: Annotated[Principal, Requires("catalog.discover", "read")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Json:
    return {"tags": await tags_service.list_tags(conn, limit=limit, offset=offset)}


@router.put("/tags/{tag}", summary="Create a tag (or update its description)", responses=ERRORS)
async def put_tag(
    tag: TagName,
    _: Annotated[Principal, Requires("tags", "write")],
    conn: WriteConn,
    body: Annotated[dict[str, Any] | None, Body()] = None,
) -> Json:
    description = (body or {}).get("description")
    if description is not None and not isinstance(description, str):
        raise Problem("invalid-parameter", "description must be a string", pointer="description")
    reason = text_defect(description) if description is not None else None
    if reason:
        raise Problem("invalid-parameter", f"description {reason}", pointer="description")
    return await tags_service.upsert_tag(conn, name=tag, description=description)


async def _change(
    conn: AsyncConnection, namespace: str, dataset: str, tag: str, field: str | None, *, add: bool
) -> Json:
    try:
        await tags_service.change_tag(
            conn, namespace=namespace, dataset=dataset, tag=tag, field=field, add=add
        )
    except tags_service.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    body = await metadata.tagged_dataset(conn, namespace, dataset)
    assert body is not None  # it was there in this transaction a moment ago
    return body


@router.post(
    "/namespaces/{namespace}/datasets/{dataset}/tags/{tag}", summary="Tag a dataset", responses=ERRORS
)
async def tag_dataset(
    namespace: Namespace,
    dataset: DatasetName,
    tag: TagName,
    _: Annotated[Principal, Requires("classification", "write", "dataset")],
    conn: WriteConn,
) -> Json:
    return await _change(conn, namespace, dataset, tag, None, add=True)


@router.delete(
    "/namespaces/{namespace}/datasets/{dataset}/tags/{tag}", summary="Untag a dataset", responses=ERRORS
)
async def untag_dataset(
    namespace: Namespace,
    dataset: DatasetName,
    tag: TagName,
    _: Annotated[Principal, Requires("classification", "write", "dataset")],
    conn: WriteConn,
) -> Json:
    return await _change(conn, namespace, dataset, tag, None, add=False)


@router.post(
    "/namespaces/{namespace}/datasets/{dataset}/fields/{field}/tags/{tag}",
    summary="Tag a field of a dataset",
    responses=ERRORS,
)
async def tag_field(
    namespace: Namespace,
    dataset: DatasetName,
    field: FieldName,
    tag: TagName,
    _: Annotated[Principal, Requires("classification", "write", "dataset")],
    conn: WriteConn,
) -> Json:
    return await _change(conn, namespace, dataset, tag, field, add=True)


@router.delete(
    "/namespaces/{namespace}/datasets/{dataset}/fields/{field}/tags/{tag}",
    summary="Untag a field of a dataset",
    responses=ERRORS,
)
async def untag_field(
    namespace: Namespace,
    dataset: DatasetName,
    field: FieldName,
    tag: TagName,
    _: Annotated[Principal, Requires("classification", "write", "dataset")],
    conn: WriteConn,
) -> Json:
    return await _change(conn, namespace, dataset, tag, field, add=False)
