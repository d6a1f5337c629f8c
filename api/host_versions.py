"""The cache store of a server without Redis: entries in this process's memory (LocalStore), index
versions in a small file every process of this host maps (RAGQL_DATA_DIR/cache-versions).

Without Redis each process kept its own versions, so a write through one uvicorn worker (or a
`ragql worker` running jobs) did not invalidate another's cached searches, which it went on
serving until their TTL. With the versions in shared memory, a bump by any process of the host
moves the version every other one reads next: their entries stop matching at once, as with
Redis. Entries stay per process (each caches what it computed; a key holds the version, so
none can be stale).

The file holds `SLOTS` 8-byte counters; a scope (a tenant's index) uses the slot its hash picks.
Two scopes sharing a slot invalidate each other: harmless, as any extra bump is. A bump holds an
exclusive flock for its read-modify-write, so concurrent bumps never lose one; a read is one
aligned 8-byte load. Counters only grow, and the file is created once, never truncated.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
from pathlib import Path

from domain.caching.store import LocalStore

log = logging.getLogger("ragql")
SLOTS = 4096
_COUNTER = struct.Struct("<Q")


class HostStore(LocalStore):
    backend = "host"

    def __init__(self, path: Path, *, slots: int = SLOTS, max_entries: int = 4096) -> None:
        super().__init__(max_entries=max_entries)
        self.path = path
        self.slots = slots
        size = slots * _COUNTER.size
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)  # zeros: every version starts at 0
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._map = mmap.mmap(self._fd, size)

    def _offset(self, scope: str) -> int:
        digest = hashlib.blake2b(scope.encode(), digest_size=8).digest()
        return (int.from_bytes(digest, "little") % self.slots) * _COUNTER.size

    async def version(self, scope: str) -> int | None:
        value: int = _COUNTER.unpack_from(self._map, self._offset(scope))[0]
        return value

    async def bump(self, scope: str) -> None:
        offset = self._offset(scope)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            _COUNTER.pack_into(self._map, offset, _COUNTER.unpack_from(self._map, offset)[0] + 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


def host_store(data_dir: Path) -> LocalStore:
    """The host-shared store under `data_dir`; this process's LocalStore if it cannot be made."""
    path = data_dir / "cache-versions"
    try:
        return HostStore(path)
    except OSError as exc:
        log.warning(
            "cannot share cache versions through %s (%s): a write through another process of this host "
            "is not seen by this one's caches until their TTL",
            path,
            exc.strerror,
        )
        return LocalStore()
