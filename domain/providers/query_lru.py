"""The encoders' in-process memory of recent query vectors (both backends share it).

Queries repeat a lot (paging, refinement, a user re-running a search), and a repeat should not
cost an encoder run. The search area's CacheStore (RAGQL_EMBEDDING_CACHE_TTL_S) caches the same
vectors across processes; this one is per process and needs no key hashing. A capacity of 0 turns
it off, which RAGQL_EMBEDDING_CACHE_TTL_S=0 asks for: with it, every query is encoded."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

import numpy as np
import numpy.typing as npt

DEFAULT_CAPACITY = 2048


class QueryVectorLRU:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be 0 (off) or more, got {capacity}")
        self.capacity = capacity
        self._vectors: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()

    def get(self, text: str) -> npt.NDArray[np.float32] | None:
        hit = self._vectors.get(text)
        if hit is not None:
            self._vectors.move_to_end(text)
        return hit

    def put(self, text: str, vector: npt.NDArray[np.float32]) -> None:
        if self.capacity == 0:
            return
        self._vectors[text] = vector
        self._vectors.move_to_end(text)
        while len(self._vectors) > self.capacity:
            self._vectors.popitem(last=False)

    async def recall(
        self, text: str, encode: Callable[[], Awaitable[npt.NDArray[np.float32]]]
    ) -> npt.NDArray[np.float32]:
        """The remembered vector for `text`, else `encode()`'s, remembered."""
        hit = self.get(text)
        if hit is not None:
            return hit
        vector = await encode()
        self.put(text, vector)
        return vector

    def __len__(self) -> int:
        return len(self._vectors)
