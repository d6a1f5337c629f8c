"""What the guard does for websockets, before and around Strawberry's protocol handlers.

- Message size: a text or binary message over RAGQL_MAX_REQUEST_BYTES closes the socket with
  1009 (message too big) before anything parses it, the same limit as an HTTP body.
- Time to identify: a socket that has not sent `connection_init` within
  RAGQL_WEBSOCKET_INIT_TIMEOUT_S is closed with 4408, on both protocols (Strawberry bounds only
  graphql-transport-ws, and at 60 s; legacy graphql-ws waited forever).
- Unidentified sockets per client address: at most RAGQL_MAX_UNIDENTIFIED_WEBSOCKETS_PER_IP at
  once; more are refused at the handshake.

The router calls `identified()` (put in the scope's state) once `connection_init` is accepted.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

IDENTIFIED_KEY = "ragql_ws_identified"
TOO_BIG_CLOSE_CODE = 1009
INIT_TIMEOUT_CLOSE_CODE = 4408
POLICY_CLOSE_CODE = 1008


class WebsocketLimits:
    def __init__(self, *, max_message_bytes: int, init_timeout_s: float, max_unidentified_per_ip: int) -> None:
        self.max_message_bytes = max_message_bytes
        self.init_timeout_s = init_timeout_s
        self.max_unidentified_per_ip = max_unidentified_per_ip
        self.unidentified: Counter[str] = Counter()

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, ip: str) -> None:
        if self.unidentified[ip] >= self.max_unidentified_per_ip:
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": POLICY_CLOSE_CODE})
            return
        socket = _Socket(self, ip, send)
        scope["state"][IDENTIFIED_KEY] = socket.identified
        try:
            await app(scope, socket.wrap_receive(receive), socket.send)
        finally:
            socket.done()


class _Socket:
    def __init__(self, limits: WebsocketLimits, ip: str, send: Send) -> None:
        self.limits, self.ip, self._send = limits, ip, send
        self.closed_by_guard = False
        self._counted = True
        limits.unidentified[ip] += 1
        self._timer: asyncio.TimerHandle | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def identified(self) -> None:
        self._uncount()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def done(self) -> None:
        self.identified()

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.limits.unidentified[self.ip] -= 1
            if self.limits.unidentified[self.ip] <= 0:
                del self.limits.unidentified[self.ip]

    async def send(self, message: Message) -> None:
        if self.closed_by_guard:
            return  # the guard closed the socket; what the app still sends goes nowhere
        if message["type"] == "websocket.accept" and self._counted:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.limits.init_timeout_s, self._init_timed_out)
        await self._send(message)

    def _init_timed_out(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self.close(INIT_TIMEOUT_CLOSE_CODE, "Connection initialisation timeout"))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self, code: int, reason: str) -> None:
        if not self.closed_by_guard:
            self.closed_by_guard = True
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def wrap_receive(self, receive: Receive) -> Receive:
        limit = self.limits.max_message_bytes

        async def guarded() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive" and _over(message, limit):
                await self.close(TOO_BIG_CLOSE_CODE, f"message over {limit} bytes")
                return {"type": "websocket.disconnect", "code": TOO_BIG_CLOSE_CODE}
            return message

        return guarded


def _over(message: Message, limit: int) -> bool:
    data = message.get("bytes")
    if data is not None:
        return len(data) > limit
    text = message.get("text") or ""
    # A character is 1..4 bytes in UTF-8: encode only when the length alone does not decide.
    if len(text) > limit or len(text) * 4 <= limit:
        return len(text) > limit
    return len(text.encode("utf-8", "surrogatepass")) > limit
