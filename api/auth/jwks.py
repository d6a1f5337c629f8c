"""Public keys for RS256/ES256 tokens, from a JWKS URL (an OIDC provider's `jwks_uri`) or file.

Keys are cached for `ttl_s`. A token signed with a key id we don't know triggers one refetch,
so a provider's key rotation is picked up at once; refetches are spaced by `min_refresh_s` so
a stream of tokens with made-up key ids can't turn us into a load generator against the IdP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
from joserfc.jwk import KeySet

from domain.errors import Unauthenticated

log = logging.getLogger("ragql.auth")


class JwksSource:
    def __init__(
        self,
        *,
        url: str | None = None,
        path: Path | None = None,
        ttl_s: float = 300.0,
        min_refresh_s: float = 10.0,
        timeout_s: float = 3.0,
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of a JWKS url or file")
        self.url, self.path = url, path
        self.ttl_s, self.min_refresh_s, self.timeout_s = ttl_s, min_refresh_s, timeout_s
        self._keys: KeySet | None = None
        self._kids: set[str] = set()
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def keys_for(self, kid: str | None) -> KeySet:
        now = time.monotonic()
        stale = self._keys is None or now - self._fetched_at > self.ttl_s
        unknown_kid = kid is not None and kid not in self._kids and now - self._fetched_at > self.min_refresh_s
        if stale or unknown_kid:
            await self._refresh()
        if self._keys is None:
            raise Unauthenticated("the token signing keys (JWKS) could not be loaded; try again shortly")
        if kid is not None and kid not in self._kids:
            raise Unauthenticated(f"token key id {kid!r} is not among the issuer's current keys")
        return self._keys

    async def _refresh(self) -> None:
        async with self._lock:
            if self._keys is not None and time.monotonic() - self._fetched_at < self.min_refresh_s:
                return  # another request refreshed while we waited
            try:
                data = await self._load()
                keys = KeySet.import_key_set(data)
            except (OSError, ValueError, httpx.HTTPError) as exc:
                # Keep serving with the keys we have; an IdP blip must not log everyone out.
                log.warning("could not load JWKS from %s: %s", self._where(), type(exc).__name__)
                self._fetched_at = time.monotonic()
                return
            self._keys = keys
            self._kids = {str(k.kid) for k in keys.keys if k.kid is not None}
            self._fetched_at = time.monotonic()
            log.info("loaded %d signing keys from %s", len(keys.keys), self._where())

    async def _load(self) -> Any:
        if self.path is not None:
            return json.loads(await asyncio.to_thread(self.path.read_text))
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            response = await client.get(str(self.url))
            response.raise_for_status()
            return response.json()

    def _where(self) -> str:
        return str(self.path) if self.path is not None else str(self.url)
