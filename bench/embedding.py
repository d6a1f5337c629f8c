"""`ragql bench --embedding`: chunks/s and one-query p50 per local embedding backend, on the same
SciFact chunks (the app's own chunker), plus each backend's mean cosine to torch fp32. Figures only.

For the ONNX backends also tokens/s, counting the real tokens and the padded slots the batches ran
(their ratio is the padding waste), and the same for the sentences of those chunks: the texts the
follow-up job `ragql.embed_sentences` embeds for answers, all of them and each distinct one once
(chunks overlap, so a sentence can be in two)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from api.settings import Settings
from domain.answers.sentence_vectors import split_passage
from domain.documents.chunking import ChunkText, chunk_document
from domain.providers.embedding import LocalEmbedder, Vectors
from domain.providers.onnx_embedder import OnnxEmbedder
from domain.providers.onnx_export import OnnxBackend, ensure_exported

BACKENDS = ("torch", "onnx", "onnx-int8")


def _chunks(dataset: Path, count: int, settings: Settings, counter: OnnxEmbedder) -> list[ChunkText]:
    out: list[ChunkText] = []
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
            out.extend(pieces)
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

    chunked = _chunks(dataset, chunks, settings, onnx("onnx-int8"))
    texts = [c.search_text for c in chunked]
    sentences = [s for c in chunked for s in split_passage(c.text)]
    queries = _queries(dataset, 200)
    tokens = sum(onnx("onnx-int8").count_tokens(t) for t in texts)
    print(f"bench embedding: {len(texts)} SciFact chunks, {tokens / len(texts):.0f} tokens each on average")
    reference: Vectors | None = None
    for backend in backends:
        model: OnnxEmbedder | None = None
        if backend == "torch":
            torch_model = LocalEmbedder(batch_size=settings.embedding_batch_size)
            encode = torch_model._encode
        else:
            model = onnx(backend)  # type: ignore[arg-type]
            encode = model.encode
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
        if model is not None:
            _throughput(model, backend, "chunks", texts)
            _sentences(model, backend, sentences, len(texts))


def _throughput(model: OnnxEmbedder, backend: str, what: str, texts: list[str]) -> None:
    """Re-encode `texts` with the counters on (the timed run above mixed in the warm-up's and the
    queries' counts): tokens/s, padded slots/s and the lanes' busy time."""
    model.reset_stats()
    started = time.perf_counter()
    model.encode(texts)
    elapsed = time.perf_counter() - started
    stats = model.reset_stats()
    print(
        f"bench embedding {backend} {what}: {len(texts) / elapsed:.1f} {what}/s, {stats.tokens / elapsed:.0f} tokens/s "
        f"({stats.slots / elapsed:.0f} padded slots/s, padding waste {1 - stats.tokens / stats.slots:.1%}), "
        f"{stats.batches} batches, lanes busy {stats.busy_s:.1f} s of {elapsed:.1f} s x {model.lanes}",
        flush=True,
    )


def _sentences(model: OnnxEmbedder, backend: str, sentences: list[str], chunks: int) -> None:
    """The follow-up job's encoder work for the same chunks, per chunk, with and without repeats."""
    for label, texts in (("sentences", sentences), ("distinct sentences", list(dict.fromkeys(sentences)))):
        started = time.perf_counter()
        model.encode(texts)
        elapsed = time.perf_counter() - started
        print(
            f"bench embedding {backend} {label}: {len(texts)} in {elapsed:.1f} s, "
            f"{chunks / elapsed:.1f} chunks' worth/s",
            flush=True,
        )
