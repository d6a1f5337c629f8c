"""How `ragql serve` runs uvicorn: the limits a public server needs, in one place.

- uvicorn's X-Forwarded-For handling is off: api/client_address.py reads the header, and only
  from RAGQL_TRUSTED_PROXIES (uvicorn would believe 127.0.0.1 by default).
- `limit_concurrency`: connections and tasks beyond it get a 503 instead of queueing forever.
- a header timeout: uvicorn has none, so a client that drips its request head one byte at a time
  holds its connection for as long as it likes. `HeaderTimeoutProtocol` closes a connection
  whose next request head has not arrived in time: the first one (counted from the connect) and
  every keep-alive follow-up (counted from the end of the previous response). uvicorn's
  keep-alive timer alone does not bound a follow-up: it is cancelled by the first byte received.
- `max_header_bytes`: the largest request head buffered (`HeaderTimeoutProtocol` counts it).
- `ws_max_size`: the largest websocket message, the same limit as an HTTP body.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.settings import Settings


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (llhttp, in C: a small search's request and response cost a
    fraction of what the pure-Python h11 protocol spends on them), closing connections whose
    request head does not arrive in time, and refusing heads over `max_head_bytes` (what h11's
    `h11_max_incomplete_event_size` did; llhttp itself has no limit)."""

    header_timeout_s: float = 10.0
    max_head_bytes: int = 64 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = True
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        counting = self._in_head
        super().data_received(data)
        if counting and self._in_head:  # the head is still incomplete after these bytes
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
                self._cancel_head_deadline()
                self.send_400_response("Request head too large.")

    def on_headers_complete(self) -> None:
        # The request is in, its deadline is met (a websocket upgrade too).
        self._in_head = False
        self._cancel_head_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # Armed before uvicorn resumes reading, so a pipelined head parsed at once disarms it.
        if not self.transport.is_closing():
            self._in_head, self._head_bytes = True, 0
            self._await_head()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_for(settings: Settings) -> type[HttpToolsProtocol]:
    return type(
        "RagqlHttpProtocol",
        (HeaderTimeoutProtocol,),
        {"header_timeout_s": settings.header_timeout_s, "max_head_bytes": settings.max_header_bytes},
    )


@cache
def _environment_limits() -> tuple[float, int]:
    settings = Settings()
    return settings.header_timeout_s, settings.max_header_bytes


class EnvironmentProtocol(HeaderTimeoutProtocol):
    """The same, for uvicorn's worker processes (RAGQL_WORKERS > 1). uvicorn pickles its config
    to start them, and a class made at run time (`protocol_for`) does not pickle: this one is
    named by its import path and reads its limits from the RAGQL_* environment, as each worker
    builds its app from it."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.header_timeout_s, self.max_head_bytes = _environment_limits()
        super().connection_made(transport)


def uvicorn_options(settings: Settings, *, workers: int = 1) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config`."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "ws": "websockets-sansio",
        "http": protocol_for(settings) if workers == 1 else f"{__name__}:{EnvironmentProtocol.__name__}",
        "proxy_headers": False,
        "forwarded_allow_ips": "",
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "ws_max_size": settings.max_request_bytes,
    }
