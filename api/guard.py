"""The gate in front of /graphql, as plain ASGI middleware (it must not buffer streamed responses).

For HTTP it admits the request (a per-IP in-process limiter, before any parsing), bounds the body,
and identifies the caller; the principal travels to the context getter in the ASGI scope's
state. Failures answer in GraphQL's error shape, with HTTP 401, 413 or 429 (+ Retry-After).

Websockets are identified later, in `connection_init` (see api/graphql_router.py); here we only
run what the connection registered for its end: releasing its slot in the per-principal count,
and cancelling its expiry timer.
"""

from __future__ import annotations

import inspect
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth.authenticate import Authenticator, credential_from_headers
from api.client_address import client_address, networks
from api.ratelimit import Bucket, Rate, RateLimiter
from api.replay import SERVED
from api.websocket_guard import WebsocketLimits
from domain.errors import Unauthenticated, retry_after_seconds
from domain.persistence.availability import database_unavailable
from schema.cost.weights import DEFAULT_WEIGHTS

log = logging.getLogger("ragql.auth")
CLEANUP_KEY = "ragql_cleanup"
PRINCIPAL_KEY = "ragql_principal"
REQUEST_ID_KEY = "ragql_request_id"
CLIENT_IP_KEY = "ragql_client_ip"
# The lifespan state (api.graphql_router.RagqlState) under this key: services, gate, server facts.
STATE_KEY = "ragql"


class GraphQLGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        admission: RateLimiter,
        admission_rate: Rate,
        max_body_bytes: int,
        max_upload_bytes: int,
        trusted_proxies: Sequence[str] = (),
        websocket_limits: WebsocketLimits | None = None,
        path: str = "/graphql",
    ) -> None:
        self.app = app
        self.admission = admission
        self.admission_rate = admission_rate
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self.path = path
        self.trusted_proxies = networks(trusted_proxies)
        self.websocket_limits = websocket_limits or WebsocketLimits(
            max_message_bytes=max_body_bytes, init_timeout_s=10.0, max_unidentified_per_ip=20
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not scope["path"].startswith(self.path):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        state[REQUEST_ID_KEY] = _request_id(headers)
        state[CLIENT_IP_KEY] = client_address(scope, self.trusted_proxies)
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, state)
            return
        await self._http(scope, receive, send, state, headers)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, state: dict[str, Any]) -> None:
        cleanups: list[Callable[[], object]] = []
        state[CLEANUP_KEY] = cleanups
        try:
            await self.websocket_limits.run(self.app, scope, receive, send, state[CLIENT_IP_KEY])
        finally:
            for cleanup in cleanups:
                outcome = cleanup()
                if inspect.isawaitable(outcome):
                    await outcome

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, state: dict[str, Any], headers: dict[str, str]
    ) -> None:
        request_id = state[REQUEST_ID_KEY]
        ip = client_ip(scope)
        decision = await self.admission.check([Bucket(f"admit:{ip}", self.admission_rate)])
        if not decision.allowed:
            await _reject(
                send,
                429,
                "RATE_LIMITED",
                "too many requests from this address",
                request_id,
                retry_after=decision.retry_after_s,
            )
            return
        limit = self._body_limit(headers)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reject(send, 413, "REQUEST_TOO_LARGE", _too_large(limit), request_id)
            return
        body = await _read_body(receive, limit)
        if body is None:
            await _reject(send, 413, "REQUEST_TOO_LARGE", _too_large(limit), request_id)
            return
        try:
            authenticator: Authenticator = state[STATE_KEY].gate.authenticator
            state[PRINCIPAL_KEY] = await authenticator.authenticate(credential_from_headers(headers))
        except Unauthenticated as exc:
            # Not the credential itself: only what was wrong with it.
            log.info("refused request_id=%s ip=%s: %s", request_id, ip, exc.message)
            # Refusals are work too (a key lookup, a signature check): the address pays the
            # minimum, so guessing keys drains its bucket like any other request would.
            gate = state[STATE_KEY].gate
            refused = await gate.limiter.check([Bucket(f"ip:{ip}", gate.rates["ip"])], DEFAULT_WEIGHTS.rejected)
            if not refused.allowed:
                message = "too many refused requests from this address"
                await _reject(send, 429, "RATE_LIMITED", message, request_id, retry_after=refused.retry_after_s)
                return
            await _reject(send, 401, "UNAUTHENTICATED", exc.message, request_id)
            return
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            # API keys and tenants are looked up in PostgreSQL: an outage is a retryable 503.
            log.warning("database unavailable during authentication request_id=%s", request_id)
            message = "the database is unreachable right now; retry shortly"
            await _reject(send, 503, "SERVICE_UNAVAILABLE", message, request_id, retry_after=1.0)
            return
        await self._answer(scope, receive, send, state, headers, body)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, state: dict[str, Any], headers: dict[str, str], body: bytes
    ) -> None:
        """A repeated search this process holds in memory is answered from its kept response
        (api/replay.py); everything else, and whatever that declines, takes the normal path."""
        ragql = state[STATE_KEY]
        replay = ragql.replay
        principal = state[PRINCIPAL_KEY]
        key = replay.key(scope, headers, principal, body) if replay is not None else None
        fallback = None
        if key is not None:
            outcome = await replay.serve(
                key,
                principal=principal,
                ip=client_ip(scope),
                charge=ragql.gate.charge,
                services=ragql.services,
                request_id=state[REQUEST_ID_KEY],
                send=send,
            )
            if outcome == SERVED:
                return
            fallback = outcome
        if replay is None:
            await self.app(scope, _replay(body, receive), _json_errors(send, state[REQUEST_ID_KEY]))
            return
        with replay.normal_path(key, fallback):
            await self.app(scope, _replay(body, receive), _json_errors(send, state[REQUEST_ID_KEY]))

    def _body_limit(self, headers: dict[str, str]) -> int:
        # Uploads are multipart; their own size limit (plus room for the form's other parts) applies.
        if headers.get("content-type", "").startswith("multipart/form-data"):
            return self.max_upload_bytes + 64 * 1024
        return self.max_body_bytes


def client_ip(scope: Scope) -> str:
    """The address the guard settled on (api/client_address.py), for every later reader."""
    state = scope.get("state", {})
    return str(state.get(CLIENT_IP_KEY) or client_address(scope))


def _request_id(headers: dict[str, str]) -> str:
    given = headers.get("x-request-id", "")
    # An id from outside is kept only if it is short and plain, so it can't forge log lines.
    if 0 < len(given) <= 64 and given.replace("-", "").isalnum():
        return given
    return uuid.uuid4().hex


def _too_large(limit: int) -> str:
    return f"request body over {limit} bytes; send fewer or smaller documents per request"


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes `limit` (what was read is dropped)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _json_errors(send: Send, request_id: str) -> Send:
    """Strawberry answers some malformed requests (no query, a bad batch, GET for a mutation) with
    a plain-text 4xx; clients expect GraphQL's error shape, so those become JSON with a code."""
    held: Message | None = None

    async def wrapped(message: Message) -> None:
        nonlocal held
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            headers = dict(message.get("headers", []))
            if headers.get(b"content-type", b"").startswith(b"text/plain"):
                held = message
                return
        if held is not None and message["type"] == "http.response.body":
            text = message.get("body", b"").decode("utf-8", "replace").strip() or "bad request"
            start, held = held, None
            await _reject(send, start["status"], "BAD_REQUEST", text, request_id)
            return
        await send(message)

    return wrapped


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as Starlette expects

    return replay


async def _reject(
    send: Send, status: int, code: str, message: str, request_id: str, *, retry_after: float | None = None
) -> None:
    extensions: dict[str, Any] = {"code": code, "requestId": request_id}
    headers = [(b"content-type", b"application/json")]
    if retry_after is not None:
        seconds = retry_after_seconds(retry_after)
        extensions["retryAfter"] = seconds
        headers.append((b"retry-after", str(seconds).encode()))
    body = json.dumps({"data": None, "errors": [{"message": message, "extensions": extensions}]}).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
