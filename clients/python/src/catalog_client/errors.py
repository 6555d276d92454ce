"""Exceptions: every error answer of the catalog is RFC 9457 problem+json, raised as an `ApiError` subclass
chosen by status, carrying the problem's fields (`type`, `title`, `detail`, `pointer`, ...)."""

from __future__ import annotations

import json
from typing import Any


class CatalogError(Exception):
    """Base of everything this client raises."""


class ConfigurationError(CatalogError):
    """The client is missing its URL (or was given a malformed one)."""


class TransportError(CatalogError):
    """The catalog could not be reached (connection refused, timeout), after the configured retries."""


class ApiError(CatalogError):
    """An error answer from the catalog, with the problem+json fields."""

    def __init__(
        self,
        status: int,
        *,
        type: str = "about:blank",
        title: str = "",
        detail: str | None = None,
        pointer: str | None = None,
        instance: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.pointer = pointer
        self.instance = instance
        self.request_id = request_id
        self.body = body
        self.retry_after = retry_after
        where = f" [{pointer}]" if pointer else ""
        super().__init__(f"{status} {title or type}: {detail or ''}{where}".rstrip(": "))

    @property
    def slug(self) -> str:
        """The last segment of `type` (`/problems/not-found` -> `not-found`): stable, switch on it."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]


class BadRequest(ApiError):
    """400: a parameter or the body is invalid (`pointer` names it)."""


class Unauthenticated(ApiError):
    """401: no API key, or a wrong one."""


class Forbidden(ApiError):
    """403: the key's role or product may not do this."""


class NotFound(ApiError):
    """404."""


class PayloadTooLarge(ApiError):
    """413."""


class UnsupportedMediaType(ApiError):
    """415."""


class Unprocessable(ApiError):
    """422: e.g. an OpenLineage event that is not valid."""


class RateLimited(ApiError):
    """429, after the retries were used up."""


class ServiceUnavailable(ApiError):
    """503 (typically the database), after the retries were used up."""


class ServerError(ApiError):
    """Any other 5xx."""


class GraphQLError(CatalogError):
    """The GraphQL answer carried `errors`."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e.get("message", e)) for e in errors) or "GraphQL error")


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: Unprocessable,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_for(status: int, content: bytes, retry_after: float | None = None) -> ApiError:
    """The exception for an error answer (problem+json when the body is one; plain text otherwise)."""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    try:
        body: Any = json.loads(content) if content else None
    except ValueError:
        body = content.decode("utf-8", "replace")
    if isinstance(body, dict) and "title" in body:
        return cls(
            status,
            type=str(body.get("type") or "about:blank"),
            title=str(body.get("title") or ""),
            detail=_text(body.get("detail")),
            pointer=_text(body.get("pointer")),
            instance=_text(body.get("instance")),
            request_id=_text(body.get("requestId") or body.get("request_id")),
            body=body,
            retry_after=retry_after,
        )
    detail = body if isinstance(body, str) else (json.dumps(body) if body is not None else None)
    return cls(status, title=f"HTTP {status}", detail=detail, body=body, retry_after=retry_after)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
