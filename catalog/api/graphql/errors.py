"""GraphQL errors meant for the caller: their message is shown; anything else is masked."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

from catalog.policy.service import AccessDenied


class UserError(Exception):
    """A mistake in the query the caller can fix (bad argument, page too large, bad cursor)."""

    code = "BAD_USER_INPUT"

    def extensions(self) -> dict[str, Any]:
        """What the error adds to the GraphQL error's `extensions`."""
        return {"code": self.code}


class QueryTimeout(UserError):
    """The query ran longer than it is allowed to."""

    code = "TIMEOUT"

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the query exceeded its time limit of {seconds:g} s; ask for less (smaller pages, less depth)"
        )


def is_user_error(error: GraphQLError) -> bool:
    """Errors whose text is safe and useful to show: validation (depth, aliases, tokens, syntax) has no
    original exception; ours are UserError, and denials. Anything else may carry internals and is masked."""
    return error.original_error is None or isinstance(error.original_error, UserError | AccessDenied)


def user_error_extensions(error: Exception) -> dict[str, Any]:
    """What a user error adds to the GraphQL error's `extensions`. A denial (raised by the request's
    Authoriser, which recorded it) is the GraphQL form of REST's 403 problem+json: FORBIDDEN and the
    rule, domain, object and action that decided."""
    if isinstance(error, AccessDenied):
        decision = error.decision
        return {
            "code": "FORBIDDEN",
            "rule": decision.rule,
            "domain": decision.domain,
            "object": decision.obj,
            "action": decision.act,
        }
    return error.extensions() if isinstance(error, UserError) else {}
