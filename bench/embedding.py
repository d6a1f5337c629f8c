"""`ragql bench --embedding`: chunks/s and one-query p50 per local embedding backend, on the same
SciFact chunks (the app's own chunker), plus each backend's mean cosine to torch fp32. Figures only."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from api.settings import Settings
from domain.documents.chunking import chunk_document
from domain.providers.embedding import LocalEmbedder, Vectors
from domain.providers.onnx_embedder import OnnxEmbedder
from domain.providers.onnx_export import OnnxBackend, ensure_exported

BACKENDS = ("torch", "onnx", "onnx-int8")


def _chunks(dataset: Path, count: int, settings: Settings, counter: OnnxEmbedder) -> list[str]:
    out: list[str] = []
    with (dataset / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            pieces = chunk_document(
                doc["title"] or doc["_id"],
                doc["text"] or doc["title"],
                max_tokens=settings.chunk_tokens,
                overlap_tokens=settings.chunk_overlap_tokens,
                count=counter.count_tokens,
            )
            out.extend(c.search_text for c in pieces)
            if len(out) >= count:
                break
    return out[:count]


def _queries(dataset: Path, count: int) -> list[str]:
    with (dataset / "queries.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh][:count]


def run_embedding_bench(settings: Settings, dataset: Path, *, chunks: int, backends: list[str]) -> None:
    onnx_backends: dict[str, OnnxEmbedder] = {}

    def onnx(backend: OnnxBackend) -> OnnxEmbedder:
        if backend not in onnx_backends:
            onnx_backends[backend] = OnnxEmbedder(
                ensure_exported(settings.model_cache_dir, backend),
                threads=settings.embedding_threads,
                max_batch_tokens=settings.embedding_max_batch_tokens,
            )
        return onnx_backends[backend]

    texts = _chunks(dataset, chunks, settings, onnx("onnx-int8"))
    queries = _queries(dataset, 200)
    tokens = sum(onnx("onnx-int8").count_tokens(t) for t in texts)
    print(f"bench embedding: {len(texts)} SciFact chunks, {tokens / len(texts):.0f} tokens each on average")
    reference: Vectors | None = None
    for backend in backends:
        if backend == "torch":
            torch_model = LocalEmbedder(batch_size=settings.embedding_batch_size)
            encode = torch_model._encode
        else:
            encode = onnx(backend).encode  # type: ignore[arg-type]
        encode(texts[:32])  # warm up: first-call allocations are not throughput
        started = time.perf_counter()
        vectors = encode(texts)
        elapsed = time.perf_counter() - started
        samples = []
        for q in queries:
            t0 = time.perf_counter()
            encode([q])
            samples.append(time.perf_counter() - t0)
        line = (
            f"bench embedding {backend}: {len(texts) / elapsed:.1f} chunks/s, "
            f"one query p50 {statistics.median(samples) * 1000:.2f} ms"
        )
        if backend == "torch":
            reference = vectors
        elif reference is not None:
            cosine = np.sum(vectors * reference, axis=1)
            line += f", cosine to torch mean {cosine.mean():.4f} min {cosine.min():.4f}"
        print(line, flush=True)
