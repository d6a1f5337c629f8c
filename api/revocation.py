"""API-key revocation, broadcast to every replica over Redis pub/sub.

`revoked(key_id)` acts here at once (drops the key from this replica's lookup cache, closes the
websockets opened with it, code 4401) and publishes the id on `ragql:revoked`; every replica's
subscriber does the same when the message arrives, within milliseconds.

The lookup cache is only trusted while the subscription is live (`live`): a replica that cannot
hear revocations (Redis down, or reconnecting) looks every key up in PostgreSQL, and it forgets
its cache when it subscribes again, since it may have missed messages meanwhile. Without Redis
the local path is the whole story for one process; one of several uvicorn workers without Redis
looks every key up (it would not hear a revocation made in another worker).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio
from redis.exceptions import RedisError

from api.redis_link import RedisLink

log = logging.getLogger("ragql.auth")
CHANNEL = "ragql:revoked"
Listener = Callable[[str], None]


class Broadcast:
    def __init__(self, redis_url: str | None, publisher: RedisLink | None = None, *, alone: bool = True) -> None:
        """`alone`: this process is the only one serving (RAGQL_WORKERS 1). Without Redis, a
        process among several cannot hear the others' revocations, so it never trusts its cache."""
        self.redis_url = redis_url
        # Publishing goes through the short-timeout link: a hung Redis must not hang revokeApiKey.
        self.publisher = publisher
        self._listeners: list[Listener] = []
        self._resubscribed: list[Callable[[], None]] = []
        self._live = redis_url is None and alone
        self._client: redis.asyncio.Redis | None = (
            redis.asyncio.Redis.from_url(redis_url, socket_connect_timeout=0.5, health_check_interval=5)
            if redis_url
            else None
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        """True when this replica hears every revocation (or is the only replica)."""
        return self._live

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def on_resubscribe(self, hook: Callable[[], None]) -> None:
        self._resubscribed.append(hook)

    async def revoked(self, key_id: str) -> None:
        self._deliver(key_id)
        if self.publisher is None:
            return
        ok, _ = await self.publisher.call("revocation", lambda r: r.publish(CHANNEL, key_id))
        if not ok:
            # The other replicas are not listening either (their subscription broke with Redis):
            # they look keys up in PostgreSQL until they subscribe again, and the websocket recheck
            # closes their sockets.
            log.warning("could not broadcast a revocation; other replicas read it from the database")

    def start(self) -> None:
        if self._client is not None and self._task is None:
            self._task = asyncio.create_task(self._subscribe_forever(), name="ragql-revocations")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def _deliver(self, key_id: str) -> None:
        for listener in self._listeners:
            try:
                listener(key_id)
            except Exception:  # one broken listener must not stop the others
                log.exception("revocation listener failed")

    async def _subscribe_forever(self) -> None:
        assert self._client is not None
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                for hook in self._resubscribed:
                    hook()
                self._live = True
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        data = message["data"]
                        self._deliver(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError):
                self._live = False
                await asyncio.sleep(1.0)
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError, TimeoutError):
                    pass
