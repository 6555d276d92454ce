"""`GET /api/v1/me`: who the presented key is (its id, name, role and product), so a client such as the
web UI can show what the role may do. Never the token. The API still judges every request on its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from catalog.api.rest.problems import problem_responses
from catalog.api.rest.requires import Requires
from catalog.auth.service import Principal

router = APIRouter(prefix="/api/v1", tags=["auth"])


class Me(BaseModel):
    """The calling key as the service knows it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    key_id: str
    key_name: str
    role: str
    product: str | None  # null for roles that hold no product (auditor, admin)


@router.get(
    "/me",
    response_model=Me,
    response_model_by_alias=True,
    summary="The calling key: its id, name, role and product (never its token)",
    responses=problem_responses(401, 403),
)
async def me(principal: Annotated[Principal, Requires("session", "read", "global")]) -> Me:
    return Me(
        key_id=principal.key_id, key_name=principal.name, role=principal.role, product=principal.product
    )
