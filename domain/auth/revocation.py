"""Telling every replica that an API key was revoked. The api layer implements it (a Redis
channel, api/revocation.py): caches drop the key and open websockets made with it close."""

from __future__ import annotations

from typing import Protocol


class Revocations(Protocol):
    async def revoked(self, key_id: str) -> None: ...


class LocalOnly:
    """No broadcast (tools, tests of the domain alone): revocation is read from PostgreSQL."""

    async def revoked(self, key_id: str) -> None:
        return None
