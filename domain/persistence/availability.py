"""Is this exception the database being unreachable (an outage), rather than a bug?

An outage is retryable: callers get SERVICE_UNAVAILABLE (HTTP 503) instead of a masked
INTERNAL_SERVER_ERROR with HTTP 200."""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa_exc

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted
    TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,  # starting up or shutting down
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    sa_exc.TimeoutError,  # the pool had no connection in time
)


def database_unavailable(error: BaseException | None) -> bool:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, _UNAVAILABLE):
            return True
        if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, OSError) and error.errno is not None:
            return True  # no route, host down, socket file gone
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__
    return False
