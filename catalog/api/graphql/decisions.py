"""Stewards' classification decisions as GraphQL mutations, the same use cases as REST's
`POST /api/v1/classifications/decisions` and `DELETE …/decisions/{id}`.

Authorisation is REST's: `classification` write in the product domain of the decision's dataset (a
steward in their own product, an admin anywhere; grants give reads only), decided by the enforcer. The request's GraphQL connection is read-only, so each mutation runs in its own transaction:
the decision, the re-propagation it causes and its audit-log entry commit together, or not at all.
"""

from __future__ import annotations

import datetime as dt
import enum

import strawberry

from catalog.api.graphql.classification import Info
from catalog.api.graphql.errors import UserError
from catalog.classification import decisions as service
from catalog.db.engine import guarded_transaction

OBJECT = "classification"


class NotFound(UserError):
    code = "NOT_FOUND"


class InvalidArgument(UserError):
    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument

    def extensions(self) -> dict[str, str]:
        return {**super().extensions(), "argument": self.argument}


@strawberry.enum(description="What a steward decides about a tag on a field.")
class DecisionAction(enum.Enum):
    ADD = "add"
    CONFIRM = "confirm"
    REJECT = "reject"


@strawberry.type(description="A steward's decision; kept for audit when withdrawn (retiredAt set).")
class ClassificationDecision:
    id: int
    namespace: str
    dataset: str
    field: str | None = strawberry.field(description="Null for a decision on the whole dataset.")
    tag: str
    action: DecisionAction
    reason: str | None
    author: str
    decided_at: dt.datetime
    retired_at: dt.datetime | None
    retired_by: str | None

    @classmethod
    def of(cls, item: service.Json) -> ClassificationDecision:
        return cls(
            id=item["id"],
            namespace=item["namespace"],
            dataset=item["dataset"],
            field=item["field"],
            tag=item["tag"],
            action=DecisionAction(item["action"]),
            reason=item["reason"],
            author=item["author"],
            decided_at=dt.datetime.fromisoformat(item["decidedAt"]),
            retired_at=dt.datetime.fromisoformat(item["retiredAt"]) if item["retiredAt"] else None,
            retired_by=item["retiredBy"],
        )


def _author(info: Info) -> str:
    # Mutations run only for an authenticated POST, which `require_write` has just authorised.
    principal = info.context.principal
    assert principal is not None
    return service.decision_author(principal)


async def decide(
    info: Info,
    *,
    namespace: str,
    dataset: str,
    field: str | None,
    tag: str,
    action: DecisionAction,
    reason: str | None,
) -> ClassificationDecision:
    await info.context.authz.require_write(namespace, dataset, OBJECT)
    author = _author(info)
    try:
        async with guarded_transaction(await info.context.authz.engine.connect()) as conn:
            made = await service.record_decision(
                conn,
                namespace=namespace,
                dataset=dataset,
                field=field,
                tag=tag,
                action=action.value,
                reason=reason,
                author=author,
            )
    except (service.DatasetNotFound, service.FieldNotFound) as exc:
        raise NotFound(str(exc)) from exc
    except service.InvalidDecision as exc:
        raise InvalidArgument(exc.field, exc.message) from exc
    return ClassificationDecision.of(made)


async def retire(info: Info, *, decision_id: int) -> ClassificationDecision:
    async with guarded_transaction(await info.context.authz.engine.connect()) as conn:
        subject = await service.decision_subject(conn, decision_id)
    if subject is None:
        raise NotFound(f"no decision {decision_id}")
    await info.context.authz.require_write(*subject, OBJECT)
    author = _author(info)
    try:
        async with guarded_transaction(await info.context.authz.engine.connect()) as conn:
            retired = await service.retire_decision(conn, decision_id=decision_id, author=author)
    except service.DecisionNotFound as exc:
        raise NotFound(str(exc)) from exc
    return ClassificationDecision.of(retired)
