"""Browsers send cookies and credentials with websocket upgrades from any page, so a socket
opened by a foreign page is refused before the upgrade (cross-site websocket hijacking)."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("ragql.ws")


class WebSocketOriginGuard:
    def __init__(self, app: ASGIApp, allowed_origins: list[str]) -> None:
        self.app = app
        self.allow_all = "*" in allowed_origins
        self.allowed = {o.rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not self.allow_all:
            origin = dict(scope.get("headers") or []).get(b"origin")
            # No Origin header means no browser: server-side clients authenticate on their own.
            if origin is not None and origin.decode("latin-1").rstrip("/").lower() not in self.allowed:
                log.warning("refused a websocket from origin %r; allowed: RAGQL_ALLOWED_ORIGINS", origin.decode())
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 4403, "reason": "origin not allowed"})
                return
        await self.app(scope, receive, send)
