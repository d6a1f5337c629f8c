"""How `ragql serve` runs uvicorn: the limits a public server needs, in one place.

- uvicorn's X-Forwarded-For handling is off: api/client_address.py reads the header, and only
  from RAGQL_TRUSTED_PROXIES (uvicorn would believe 127.0.0.1 by default).
- `limit_concurrency`: connections and tasks beyond it get a 503 instead of queueing forever.
- a header timeout: uvicorn has none, so a client that drips its request head one byte at a time
  holds its connection for as long as it likes. `HeaderTimeoutH11Protocol` closes a connection
  whose next request head has not arrived in time: the first one (counted from the connect) and
  every keep-alive follow-up (counted from the end of the previous response). uvicorn's
  keep-alive timer alone does not bound a follow-up: it is cancelled by the first byte received.
- `h11_max_incomplete_event_size`: the largest request head buffered.
- `ws_max_size`: the largest websocket message, the same limit as an HTTP body.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from api.settings import Settings


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request head does not arrive in time."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._await_head()

    def handle_events(self) -> None:
        before = self.headers
        super().handle_events()
        # h11 sets `headers` to a new list for every request head it has parsed whole (a
        # websocket upgrade too): that request is in, its deadline is met.
        if self.headers is not before:
            self._cancel_head_deadline()

    def on_response_complete(self) -> None:
        # Armed before uvicorn resumes reading, so a pipelined head parsed at once disarms it.
        if not self.transport.is_closing():
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


def protocol_for(settings: Settings) -> type[H11Protocol]:
    return type("RagqlH11Protocol", (HeaderTimeoutH11Protocol,), {"header_timeout_s": settings.header_timeout_s})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config`."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "ws": "websockets-sansio",
        "http": protocol_for(settings),
        "proxy_headers": False,
        "forwarded_allow_ips": "",
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "ws_max_size": settings.max_request_bytes,
    }
