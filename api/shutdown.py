"""Shutdown on SIGTERM/SIGINT. uvicorn stops accepting, lets in-flight HTTP requests finish (up to
RAGQL_SHUTDOWN_GRACE_S) and then runs the lifespan's cleanup. Its own websocket shutdown uses 1012
(service restart); ragql first closes every authenticated websocket with 1001 (going away) and a
reason, so clients reconnect to another replica knowing why."""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn
from starlette.websockets import WebSocket, WebSocketState

log = logging.getLogger("ragql")
GOING_AWAY = 1001
OPEN_SOCKETS: set[WebSocket] = set()


async def close_websockets(reason: str = "server shutting down: reconnect") -> int:
    sockets = [ws for ws in OPEN_SOCKETS if ws.application_state == WebSocketState.CONNECTED]
    for ws in sockets:
        try:
            await ws.close(code=GOING_AWAY, reason=reason)
        except RuntimeError:
            pass  # closed meanwhile
    return len(sockets)


class GracefulServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        closed = await close_websockets()
        if closed:
            log.info("shutdown: closed %d websockets with 1001", closed)
            await asyncio.sleep(0)  # let the close frames reach the transports
        await super().shutdown(sockets)
