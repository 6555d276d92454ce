"""Is the database unavailable? One classifier for every route, the ingest writer and GraphQL.

Decided by exception class and SQLSTATE, never by message text: asyncpg's wording changes between
versions and differs per code path (a backend killed mid-transaction surfaces as `InterfaceError:
cannot call Transaction.__aexit__(): the underlying connection is closed`, which names no connection
error at all). Code that holds a raw asyncpg connection turns "the statement failed and the connection
is now closed" into `DatabaseUnavailable` (`raw_transaction`, the GraphQL request connection), because
for that one case the class (plain `InterfaceError`, also raised for misuse) does not tell.

One asyncpg class is a lost connection in disguise: `InternalClientError` ("cannot switch to state 12;
another operation (2) is in progress"). A backend terminated while its connection sits idle sends a FATAL
ErrorResponse and then closes; asyncpg parses the error at once (the protocol leaves its idle state) but
sees the end of the stream one event-loop turn later, and an operation started in between fails with that
error (MagicStack/asyncpg#1069). asyncpg then aborts the connection, so the pool does not hand it out
again (tests/db/test_broken_protocol.py); the request that met it is told to retry.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# SQLSTATEs meaning "not now", not "this request is wrong": connection exceptions (class 08),
# admin_shutdown / crash_shutdown / cannot_connect_now (57P01-57P03), too_many_connections (53300).
UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08"})

RETRY_AFTER_SECONDS = 1


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached right now, or the connection was lost; retry (HTTP 503)."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's `.orig`) and what caused it, each once."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            todo.append(orig)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)


# Socket errors of a connection that cannot be made or was cut (by errno, never by message).
_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EADDRNOTAVAIL,
    }
)


def _network_error(exc: BaseException) -> bool:
    """A socket-level failure reaching PostgreSQL, not any OSError: a missing file or a denied
    permission elsewhere in a request (an export, a key file) stays an internal error."""
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    if not isinstance(exc, OSError):
        return False
    if exc.errno is None:
        # asyncio's create_connection aggregates the failures of several addresses into a bare OSError.
        return type(exc) is OSError
    if exc.errno == errno.ENOENT:
        # A Unix socket that is not there (the server is down); a file opened by path names its file.
        return exc.filename is None
    return exc.errno in _NETWORK_ERRNOS


def unavailable_sqlstate(sqlstate: object) -> bool:
    return isinstance(sqlstate, str) and (
        sqlstate in UNAVAILABLE_SQLSTATES or sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES
    )


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean 'the database is down, restarting, full or the connection was lost',
    not 'this data is wrong'. Looks through wrapping (SQLAlchemy) and chaining (`raise … from`)."""
    for current in _chain(exc):
        if isinstance(current, DatabaseUnavailable | PoolTimeout) or _network_error(current):
            # The pool's own TimeoutError means every connection is busy: the database is saturated.
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, asyncpg.exceptions.InternalClientError):
            return True  # a connection whose backend is gone (see the module docstring)
        # asyncpg's PostgresError and SQLAlchemy's adapted DBAPI errors both carry `sqlstate`.
        if unavailable_sqlstate(getattr(current, "sqlstate", None)):
            return True
    return False
