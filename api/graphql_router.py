"""The /graphql router: the request context, and websocket authentication in `connection_init`.

HTTP callers were identified by api/guard.py before the router runs. A websocket is identified
when its `connection_init` arrives; until then its context holds a principal with no roles.
A refused `connection_init` closes the socket (graphql-transport-ws: 4403; legacy graphql-ws:
a `connection_error` message). A socket whose credential expires or whose API key is revoked is
closed with 4401 and a reason that says what to do, on both protocols and on every replica: the
revocation broadcast (api/revocation.py) closes it at once, and a recheck every
`recheck_s` seconds against PostgreSQL closes it when the broadcast could not arrive (Redis down).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Scope
from starlette.websockets import WebSocket, WebSocketState
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.types.unset import UnsetType

from api import metrics
from api.auth.authenticate import Authenticator, credential_from_headers, credential_from_params
from api.graphiql.page import graphiql_html
from api.guard import CLEANUP_KEY, PRINCIPAL_KEY, REQUEST_ID_KEY, STATE_KEY, client_ip
from api.json_body import decode_bounded_json
from api.ratelimit import Bucket, Rate, RateLimiter
from api.replay import ResponseReplay, note_response, precharged
from api.revocation import Broadcast
from api.shutdown import OPEN_SOCKETS
from api.socket_slots import SocketSlots
from api.websocket_guard import IDENTIFIED_KEY
from domain.auth.principal import Principal
from domain.documents.validation import bad_character
from domain.errors import RateLimited, Unauthenticated, retry_after_seconds
from domain.runtime import ServerFacts, Services
from schema.context import Context, ThrottleStatus

log = logging.getLogger("ragql.auth")
EXPIRED_CLOSE_CODE = 4401


class Gatekeeping:
    """What the api layer keeps per process for identity and limits (on `app.state.gate`)."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        limiter: RateLimiter,
        rates: dict[str, Rate],
        slots: SocketSlots,
        broadcast: Broadcast,
        recheck_s: float = 5.0,
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.rates = rates
        self.slots = slots
        self.broadcast = broadcast
        self.recheck_s = recheck_s
        # API key id -> how to close each open websocket made with it.
        self.key_sockets: defaultdict[str, set[Callable[[], None]]] = defaultdict(set)
        broadcast.listen(self._close_key_sockets)

    @property
    def max_websockets(self) -> int:
        return self.slots.cap

    def _close_key_sockets(self, key_id: str) -> None:
        for close in list(self.key_sockets.pop(key_id, ())):
            close()

    def buckets(self, principal: Principal, ip: str) -> list[Bucket]:
        out = [Bucket(f"ip:{ip}", self.rates["ip"]), Bucket(f"tenant:{principal.tenant_id}", self.rates["tenant"])]
        if principal.api_key_id is not None:
            out.append(Bucket(f"key:{principal.api_key_id}", self.rates["api_key"]))
        elif principal.authenticated:
            out.append(Bucket(f"user:{principal.tenant_id}:{principal.subject}", self.rates["user"]))
        return out

    async def charge(self, principal: Principal, ip: str, cost: int) -> ThrottleStatus:
        decision = await self.limiter.check(self.buckets(principal, ip), cost)
        if not decision.allowed:
            wait = retry_after_seconds(decision.retry_after_s)
            raise RateLimited(
                f"rate limit reached: this operation costs {cost}; retry in {wait} s "
                "(see extensions.cost on responses for what each operation costs)",
                retry_after_s=decision.retry_after_s,
            )
        return ThrottleStatus(
            maximum_available=decision.limit,
            currently_available=decision.remaining,
            restore_rate=decision.restore_rate,
            backend=decision.backend,
        )


def _has_bad_character(value: object) -> bool:
    if isinstance(value, str):
        return bad_character(value) is not None
    if isinstance(value, dict):
        return any(_has_bad_character(k) or _has_bad_character(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_bad_character(v) for v in value)
    return False


def principal_key(principal: Principal) -> str:
    who = principal.api_key_id or principal.subject
    return f"{principal.tenant_id}:{principal.method}:{who}"


@dataclass(frozen=True)
class RagqlState:
    """What the lifespan yields (Starlette lifespan state): each request's scope["state"] carries it."""

    services: Services
    gate: Gatekeeping
    facts: ServerFacts
    replay: ResponseReplay | None = None  # kept responses of repeated searches (api/replay.py)


def ragql_state(scope: Scope) -> RagqlState:
    state: RagqlState = scope["state"][STATE_KEY]
    return state


async def get_context(connection: HTTPConnection) -> Context:
    """One context getter for HTTP requests and websockets (both are HTTPConnections)."""
    app_state = ragql_state(connection.scope)
    services, gate = app_state.services, app_state.gate
    state = connection.scope.get("state", {})
    # Websockets start with no roles; connection_init sets the real principal.
    principal: Principal = state.get(PRINCIPAL_KEY) or Principal(services.dev_tenant, "unidentified", [])
    context = Context(
        services=services, principal=principal, request_id=state.get(REQUEST_ID_KEY, "-"), facts=app_state.facts
    )
    ip = client_ip(connection.scope)

    async def charge(cost: int) -> ThrottleStatus:
        # A replayed search that had to be rendered the normal way was charged already.
        done = precharged(cost)
        if done is not None:
            return done
        # Reads context.principal at call time: on a websocket it is set after this getter ran.
        return await gate.charge(context.principal, ip, cost)

    context.charge = charge
    return context


class RagqlRouter(GraphQLRouter[Context, None]):
    """Strawberry's router with ragql's GraphiQL page, websocket identity, and an Origin check
    that reads the same allow-list and pattern as CORS (api/app.py)."""

    def __init__(self, *args: Any, origin_regex: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origin_pattern = re.compile(origin_regex) if origin_regex else None

    def decode_json(self, data: str | bytes) -> object:
        # Bounded depth and numbers, on HTTP bodies and websocket messages alike (api/json_body.py).
        return decode_bounded_json(data)

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        # A request being recorded for replay keeps what was answered (api/replay.py).
        note_response(response_data, response.status_code, list(response.raw_headers), bytes(response.body))
        return response

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        # Assets from this server (api/graphiql/), not a CDN: GraphiQL loads without internet.
        return HTMLResponse(graphiql_html())

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        if super().is_websocket_origin_allowed(request, origin):
            return True
        # fullmatch, as Starlette's CORSMiddleware does, so both checks agree on every origin.
        return self.origin_pattern is not None and self.origin_pattern.fullmatch(origin) is not None

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        websocket = context.request
        assert isinstance(websocket, WebSocket)
        gate = ragql_state(websocket.scope).gate
        if _has_bad_character(context.connection_params):
            # Refused before anything reads it (a surrogate can't be encoded as a header or logged).
            raise ConnectionRejectionError(
                {"message": "connection_init carries a NUL or a lone UTF-16 surrogate", "code": "INVALID_CHARACTER"}
            )
        try:
            credential = credential_from_params(context.connection_params) or credential_from_headers(websocket.headers)
            principal = await gate.authenticator.authenticate(credential)
        except Unauthenticated as exc:
            log.info("refused websocket request_id=%s: %s", context.request_id, exc.message)
            raise ConnectionRejectionError({"message": exc.message, "code": "UNAUTHENTICATED"}) from exc
        key = principal_key(principal)
        slot = await gate.slots.acquire(key)
        if slot is None:
            raise ConnectionRejectionError(
                {"message": f"at most {gate.max_websockets} open websockets per caller", "code": "RATE_LIMITED"}
            )
        context.principal = principal
        identified = websocket.scope["state"].get(IDENTIFIED_KEY)
        if identified is not None:
            identified()  # no longer counts as an unidentified socket, and its init timer stops
        cleanups = websocket.scope["state"][CLEANUP_KEY]
        metrics.WEBSOCKETS_OPEN.inc()

        async def release() -> None:
            metrics.WEBSOCKETS_OPEN.dec()
            await gate.slots.release(key, slot)

        cleanups.append(release)
        OPEN_SOCKETS.add(websocket)
        cleanups.append(lambda: OPEN_SOCKETS.discard(websocket))
        if principal.expires_at is not None:
            self._close_at(websocket, principal.expires_at)
        if principal.api_key_id is not None:
            self._close_on_revocation(websocket, gate, principal.api_key_id)
        if credential is not None:
            self._recheck(websocket, gate, credential)
        return {"tenant": principal.tenant_id, "subject": principal.subject}

    @staticmethod
    def _close_at(websocket: WebSocket, expires_at: float) -> None:
        async def close_when_expired() -> None:
            await asyncio.sleep(max(0.0, expires_at - time.time()))
            await _close(websocket, "Token expired: reconnect with a fresh token")

        task = asyncio.create_task(close_when_expired())
        websocket.scope["state"][CLEANUP_KEY].append(task.cancel)

    @staticmethod
    def _close_on_revocation(websocket: WebSocket, gate: Gatekeeping, key_id: str) -> None:
        def close() -> None:
            task = asyncio.create_task(_close(websocket, "API key revoked: reconnect with a valid key"))
            websocket.scope["state"][CLEANUP_KEY].append(task.cancel)

        gate.key_sockets[key_id].add(close)

        def forget() -> None:
            sockets = gate.key_sockets.get(key_id)
            if sockets is not None:
                sockets.discard(close)
                if not sockets:
                    del gate.key_sockets[key_id]

        websocket.scope["state"][CLEANUP_KEY].append(forget)

    @staticmethod
    def _recheck(websocket: WebSocket, gate: Gatekeeping, credential: str) -> None:
        async def recheck_forever() -> None:
            while True:
                await asyncio.sleep(gate.recheck_s)
                try:
                    await gate.authenticator.recheck(credential)
                except Unauthenticated as exc:
                    await _close(websocket, f"{exc.message}: reconnect with a valid credential")
                    return
                except Exception:  # a database hiccup is not a reason to drop the socket
                    log.debug("websocket credential recheck failed", exc_info=True)

        task = asyncio.create_task(recheck_forever())
        websocket.scope["state"][CLEANUP_KEY].append(task.cancel)


async def _close(websocket: WebSocket, reason: str) -> None:
    if websocket.application_state != WebSocketState.DISCONNECTED:
        try:
            await websocket.close(code=EXPIRED_CLOSE_CODE, reason=reason[:120])
        except RuntimeError:
            pass  # closed meanwhile
