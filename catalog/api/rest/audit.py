"""Signing keys (public halves) and signed compliance exports over REST."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from catalog.api.rest.deps import ReadConn
from catalog.api.rest.problems import Problem, problem_responses
from catalog.api.rest.requires import Requires
from catalog.audit.signing import kek_from_settings, list_public_keys, public_pem
from catalog.auth.service import Principal
from catalog.export.bundle import ExportRequest, write_bundle

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["audit"])


class SigningKeyOut(BaseModel):
    keyId: str
    algorithm: str
    publicKey: str  # raw 32 bytes, base64
    publicKeyPem: str
    createdAt: dt.datetime
    retiredAt: dt.datetime | None
    active: bool


class SigningKeysOut(BaseModel):
    keys: list[SigningKeyOut]


@router.get(
    "/signing-keys",
    summary="Public keys that sign exports and audit checkpoints (retired ones too, to verify old bundles)",
    responses=problem_responses(401, 503),
)
async def signing_keys(
    conn: ReadConn, _: Annotated[Principal, Requires("catalog.discover", "read")]
) -> SigningKeysOut:
    keys = await list_public_keys(conn)
    return SigningKeysOut(
        keys=[
            SigningKeyOut(
                keyId=k.key_id,
                algorithm=k.algorithm,
                publicKey=base64.b64encode(bytes(k.public_key)).decode(),
                publicKeyPem=public_pem(bytes(k.public_key)),
                createdAt=k.created_at,
                retiredAt=k.retired_at,
                active=k.retired_at is None,
            )
            for k in keys
        ]
    )


def _instant(value: dt.datetime | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise Problem(
            "invalid-parameter", f"{name} needs a time zone (e.g. 2026-06-30T23:59:59Z)", pointer=name
        )
    return value


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    try:
        with path.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, 256 * 1024):
                yield chunk
    finally:
        await asyncio.to_thread(path.unlink, missing_ok=True)


@router.get(
    "/exports",
    summary="A signed compliance bundle (zip) as of an instant; auditors and admins only",
    responses={
        200: {"content": {"application/zip": {}}, "description": "The bundle"},
        **problem_responses(400, 401, 403, 503),
    },
    response_class=StreamingResponse,
)
async def export_bundle(
    request: Request,
    principal: Annotated[Principal, Requires("export", "read", "product")],
    as_of: Annotated[
        dt.datetime | None, Query(alias="asOf", description="The instant to reproduce (default: now).")
    ] = None,
    period_from: Annotated[
        dt.datetime | None, Query(alias="from", description="Start of the period for audit rows and denials.")
    ] = None,
    period_to: Annotated[dt.datetime | None, Query(alias="to", description="End of the period.")] = None,
    product: Annotated[str | None, Query(description="Only this product's data.", max_length=200)] = None,
) -> StreamingResponse:
    engine = request.app.state.engine
    export = ExportRequest(
        as_of=_instant(as_of, "asOf"),
        period_from=_instant(period_from, "from"),
        period_to=_instant(period_to, "to"),
        product=product,
        actor=principal.key_id,
    )
    settings: Any = request.app.state.settings
    # Built on disk, not in memory: the bundle can be large, and the manifest (last) needs every hash.
    fd, name = tempfile.mkstemp(prefix="catalog-export-", suffix=".zip")
    os.close(fd)
    path = Path(name)
    try:
        result = await write_bundle(
            engine, path, export, kek_from_settings(settings), read=request.app.state.read
        )
    except BaseException:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    size = (await asyncio.to_thread(path.stat)).st_size
    stamp = result.manifest["asOf"].replace(":", "").replace("-", "")[:15]
    return StreamingResponse(
        _file_chunks(path),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="catalog-export-{stamp}.zip"',
            "Content-Length": str(size),
            "X-Signing-Key-Id": result.key_id,
        },
    )
