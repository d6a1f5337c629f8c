"""The ONNX embedding backends: chosen by settings, close to torch fp32, exported robustly, and the
encoder thread's batching hands every request its own rows. The real model files throughout.

The exports live in the configured model cache (RAGQL_MODEL_CACHE_DIR, else the user cache), which
`make install` fills with `ragql export-model --all`; a test that breaks an export works on a copy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from api.bootstrap import build_embedder
from api.settings import Settings
from domain.providers.embedding import LocalEmbedder, embed_each
from domain.providers.onnx_embedder import OnnxEmbedder, _Request
from domain.providers.onnx_export import (
    MODEL_FILE,
    ModelExportError,
    OnnxBackend,
    ensure_exported,
    export_dir,
    verify,
)

SENTENCES = [
    "Vitamin D deficiency is associated with an increased risk of fractures in older adults.",
    "The mitochondrial membrane potential drops before apoptosis.",
    "A heist goes wrong.",
    "CRISPR-Cas9 editing of T cells improved the response to the tumour in mice, but not in every trial "
    "arm; the authors call for a larger randomised study before any clinical use.",
    "x",
]


@pytest.fixture(scope="module")
def cache_root() -> Path:
    return Settings().model_cache_dir


@pytest.fixture(scope="module")
def onnx_embedders(cache_root: Path) -> dict[str, OnnxEmbedder]:
    return {
        backend: OnnxEmbedder(ensure_exported(cache_root, backend), max_batch_tokens=512)
        for backend in ("onnx", "onnx-int8")
    }


def test_settings_choose_the_backend(cache_root: Path) -> None:
    assert Settings().embedding_backend == "onnx-int8"
    torch_model = build_embedder(Settings(embedding_backend="torch"))
    assert isinstance(torch_model, LocalEmbedder) and torch_model.backend == "torch"
    for backend in ("onnx", "onnx-int8"):
        model = build_embedder(Settings(embedding_backend=backend, model_cache_dir=cache_root))
        assert isinstance(model, OnnxEmbedder)
        assert model.backend == backend
        assert (model.name, model.dim) == (torch_model.name, torch_model.dim)


# int8 loses most on the shortest inputs (one token: 0.979); on SciFact chunks the mean is 0.994 on
# a CPU with AVX-512 VNNI. Without VNNI (AVX2 only: an AMD EPYC here) onnxruntime's u8s8 kernel
# sums pairs in 16 bits, which can saturate: these five sentences' mean is 0.9893 there (SciFact
# chunks 0.9927; 7-bit weights, `reduce_range`, gave 0.9888 and 0.9937, so the recipe stays). The
# floor holds on both kinds and still fails a real loss (per-tensor scales: SciFact chunks 0.943).
@pytest.mark.parametrize(("backend", "mean_floor", "min_floor"), [("onnx", 0.9999, 0.9999), ("onnx-int8", 0.985, 0.97)])
async def test_vectors_stay_close_to_torch(
    embedder: LocalEmbedder,
    onnx_embedders: dict[str, OnnxEmbedder],
    backend: str,
    mean_floor: float,
    min_floor: float,
) -> None:
    reference = await embedder.embed(SENTENCES)
    vectors = await onnx_embedders[backend].embed(SENTENCES)
    assert vectors.shape == reference.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosine = np.sum(vectors * reference, axis=1)
    assert cosine.mean() > mean_floor and cosine.min() > min_floor, cosine
    # Different texts must still be told apart as torch tells them apart.
    assert np.argmax(vectors @ reference.T, axis=1).tolist() == list(range(len(SENTENCES)))


def test_token_counts_match_torch(embedder: LocalEmbedder, onnx_embedders: dict[str, OnnxEmbedder]) -> None:
    # Chunk boundaries come from count_tokens: switching backend must not re-chunk anything.
    for text in SENTENCES:
        assert onnx_embedders["onnx-int8"].count_tokens(text) == embedder.count_tokens(text)


async def test_concurrent_requests_get_their_own_rows(onnx_embedders: dict[str, OnnxEmbedder]) -> None:
    model = onnx_embedders["onnx"]
    one_by_one = np.stack([model.encode([s])[0] for s in SENTENCES])
    # Overlapping requests of different sizes at once: the encoder pools, sorts and splits them
    # across several capped batches (max_batch_tokens=512), then hands each its own rows back.
    requests = [SENTENCES, SENTENCES[::-1], SENTENCES[1:3], SENTENCES * 8]
    results = await asyncio.gather(*(asyncio.wrap_future(model.submit(r)) for r in requests))
    for texts, got in zip(requests, results, strict=True):
        want = one_by_one[[SENTENCES.index(t) for t in texts]]
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_small_requests_go_first_and_batches_respect_the_token_cap(
    onnx_embedders: dict[str, OnnxEmbedder],
) -> None:
    model = onnx_embedders["onnx"]
    bulk = _Request(texts=["long"] * 40, future=concurrent.futures.Future(), rank=(1, 7))
    bulk.ids = [[1] * (20 + i) for i in range(40)]
    query = _Request(texts=["query"], future=concurrent.futures.Future(), rank=(0, 0))
    query.ids = [[1] * 30]
    pending = [(bulk, i) for i in range(40)] + [(query, 0)]
    batch = model._next_batch(pending)
    assert batch[0] == (query, 0)
    assert 1 < len(batch) < len(pending)
    assert max(len(r.ids[i]) for r, i in batch) * len(batch) <= 512
    # The rest of the batch is the shortest bulk texts.
    assert [i for r, i in batch[1:]] == list(range(len(batch) - 1))


def test_a_long_querys_windows_run_one_per_run_and_typed_queries_share_one(
    onnx_embedders: dict[str, OnnxEmbedder],
) -> None:
    """A pasted paragraph's windows run one per run, so the free lanes share them (at one query
    at a time both cores encode it) and its short tail never pads to a full window's width.
    Typed queries, and a short tail, still share a run."""
    model = onnx_embedders["onnx"]
    windows = _Request(texts=["w"] * 3, future=concurrent.futures.Future(), rank=(0, 0))
    windows.ids = [[1] * 229, [1] * 20, [1] * 228]
    queries = _Request(texts=["q"] * 2, future=concurrent.futures.Future(), rank=(0, 0))
    queries.ids = [[1] * 12, [1] * 30]
    pending = [(windows, i) for i in range(3)] + [(queries, i) for i in range(2)]
    first = model._next_batch(pending)
    assert [(r is windows, i) for r, i in first] == [(False, 0), (True, 1), (False, 1)]
    rest = [p for p in pending if p not in first]
    second = model._next_batch(rest)
    assert second == [(windows, 0)]  # a paragraph's windows in their order
    assert model._next_batch([p for p in rest if p not in second]) == [(windows, 2)]


def test_pasted_paragraphs_are_served_oldest_first_and_typed_queries_before_them(
    onnx_embedders: dict[str, OnnxEmbedder],
) -> None:
    """Shortest window first let a stream of newer paragraphs with shorter windows starve an older
    one with longer windows under load; a newer typed query still goes before both."""
    model = onnx_embedders["onnx"]
    older = _Request(texts=["p"] * 2, future=concurrent.futures.Future(), rank=(0, 1))
    older.ids = [[1] * 250, [1] * 250]
    newer = _Request(texts=["p"] * 2, future=concurrent.futures.Future(), rank=(0, 2))
    newer.ids = [[1] * 130, [1] * 130]
    typed = _Request(texts=["q"], future=concurrent.futures.Future(), rank=(0, 3))
    typed.ids = [[1] * 9]
    pending = [(newer, 0), (newer, 1), (older, 1), (older, 0), (typed, 0)]
    order: list[tuple[bool, bool, int]] = []
    while pending:
        batch = model._next_batch(pending)
        order.extend((r is older, r is typed, i) for r, i in batch)
        pending = [p for p in pending if p not in batch]
    assert order == [(False, True, 0), (True, False, 0), (True, False, 1), (False, False, 0), (False, False, 1)]


def test_interactive_requests_are_stamped_in_arrival_order(cache_root: Path) -> None:
    model = OnnxEmbedder(ensure_exported(cache_root, "onnx-int8"))
    # A queue of the test's own: the encoder thread keeps waiting on the one it started with, so
    # the requests stay here to be read.
    model._queue = queue.SimpleQueue()
    model.submit(["a pasted paragraph's window"], interactive=True)
    model.submit(["a typed query"])
    model.submit(["a document's chunk"] * 10)
    ranks = [model._queue.get_nowait().rank for _ in range(3)]
    assert ranks[0][0] == ranks[1][0] == 0 and ranks[0][1] < ranks[1][1], ranks
    assert ranks[2][0] == 1, ranks  # bulk work


async def test_one_paragraphs_windows_are_encoded_on_two_lanes_at_once(cache_root: Path) -> None:
    """With two lanes, a paragraph of two full windows runs on both: each lane's thread runs one
    window, and the vectors are the ones a single batch gives."""
    model = OnnxEmbedder(ensure_exported(cache_root, "onnx-int8"), threads=2)
    seen: set[str] = set()
    run = model._run

    def spy(batch: list[tuple[_Request, int]]) -> None:
        assert len(batch) == 1
        seen.add(threading.current_thread().name)
        time.sleep(0.05)  # both lanes hold a window at once, whatever the machine's speed
        run(batch)

    model._run = spy  # type: ignore[method-assign]
    windows = [" ".join(SENTENCES * 6)] * 2
    assert all(model.count_tokens(w) > 200 for w in windows)
    got = await model.embed_interactive(windows)
    assert len(seen) == 2, seen
    model._run = run  # type: ignore[method-assign]
    alone = model.encode(windows[:1])[0]  # int8 scales activations per run: compare like runs
    np.testing.assert_allclose(got, np.stack([alone, alone]), atol=1e-6)


def test_bulk_requests_are_served_oldest_first(onnx_embedders: dict[str, OnnxEmbedder]) -> None:
    """An ingest pipeline queues the next batch while the current one runs: the current batch's
    texts go first even when the next one's are shorter."""
    model = onnx_embedders["onnx"]
    current = _Request(texts=["x"] * 3, future=concurrent.futures.Future(), rank=(1, 1))
    current.ids = [[1] * 60, [1] * 50, [1] * 40]
    following = _Request(texts=["y"] * 3, future=concurrent.futures.Future(), rank=(1, 2))
    following.ids = [[1] * 5, [1] * 6, [1] * 7]
    pending = [(following, i) for i in range(3)] + [(current, i) for i in range(3)]
    batch = model._next_batch(pending)
    assert [(r is current, i) for r, i in batch[:3]] == [(True, 2), (True, 1), (True, 0)]


async def test_each_documents_vectors_arrive_whole_and_a_cancelled_one_is_dropped(
    onnx_embedders: dict[str, OnnxEmbedder],
) -> None:
    model = onnx_embedders["onnx-int8"]
    groups = [SENTENCES[:2], SENTENCES[2:3], SENTENCES * 30]
    futures = embed_each(model, groups)
    futures[2].cancel()
    first, second = await futures[0], await futures[1]
    # int8 scales activations per encoder batch, so compare directions, not digits.
    cosine = np.sum(np.vstack([first, second]) * model.encode(SENTENCES[:3]), axis=1)
    assert first.shape == (2, 384) and second.shape == (1, 384) and cosine.min() > 0.98
    assert futures[2].cancelled()


async def test_a_cancelled_request_does_not_stop_the_encoder(onnx_embedders: dict[str, OnnxEmbedder]) -> None:
    model = onnx_embedders["onnx-int8"]
    model.submit(SENTENCES * 20).cancel()
    vectors = await model.embed(SENTENCES[:2])
    assert vectors.shape == (2, 384)


def _copy_export(cache_root: Path, tmp_path: Path, backend: OnnxBackend) -> Path:
    source = ensure_exported(cache_root, backend).directory
    target = export_dir(tmp_path, backend)
    shutil.copytree(source, target)
    return target


def test_a_corrupt_export_is_detected_and_re_exported(cache_root: Path, tmp_path: Path) -> None:
    target = _copy_export(cache_root, tmp_path, "onnx")
    good = (target / MODEL_FILE).read_bytes()
    (target / MODEL_FILE).write_bytes(good[: len(good) // 2])  # an interrupted copy
    with pytest.raises(ModelExportError, match="does not match its manifest"):
        verify(target, "onnx")
    model = ensure_exported(tmp_path, "onnx")
    assert model.directory == target
    assert (target / MODEL_FILE).stat().st_size == len(good)
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")], "no temporary directory left"


def test_a_missing_manifest_is_a_clear_error(cache_root: Path, tmp_path: Path) -> None:
    target = _copy_export(cache_root, tmp_path, "onnx-int8")
    (target / "manifest.json").unlink()
    with pytest.raises(ModelExportError, match=r"manifest\.json is missing"):
        verify(target, "onnx-int8")


def test_an_unwritable_cache_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(ModelExportError, match="RAGQL_MODEL_CACHE_DIR"):
        ensure_exported(blocker, "onnx")


async def test_long_texts_are_counted_whole_and_windowed(
    embedder: LocalEmbedder, onnx_embedders: dict[str, OnnxEmbedder]
) -> None:
    """The encoder truncates what it embeds at 256 word pieces, but counting must not: a long
    query's windows (domain/retrieval/long_query.py) are sized from the count, and a count capped at
    256 made the served backend embed one truncated window plus the tail, dropping the middle."""
    from domain.retrieval.long_query import embed_any_length

    long_text = " ".join(SENTENCES[:4]) * 12
    onnx = onnx_embedders["onnx-int8"]
    assert embedder.count_tokens(long_text) > 600
    assert onnx.count_tokens(long_text) == embedder.count_tokens(long_text)
    # The pooled vector of the ONNX backend is torch's (same windows), not the first window's.
    pooled, reference = await embed_any_length(onnx, long_text), await embed_any_length(embedder, long_text)
    assert float(np.dot(pooled, reference)) > 0.98


def test_int8_layer_norms_stay_unfused(cache_root: Path, tmp_path: Path) -> None:
    """onnxruntime's SkipLayerNormalization CPU kernel is ~10x slower than Add + LayerNormalization:
    neither the export nor the session may fuse them (the int8 encoder gained 1.4x in CPU per chunk)."""
    import onnx

    from domain.providers.onnx_embedder import open_session

    for backend in ("onnx", "onnx-int8"):
        model = ensure_exported(cache_root, backend)
        exported = {node.op_type for node in onnx.load(str(model.model_file)).graph.node}
        assert "SkipLayerNormalization" not in exported
        optimized = tmp_path / f"{backend}.onnx"
        open_session(model, 1, save_optimized_to=optimized)
        ran = {node.op_type for node in onnx.load(str(optimized)).graph.node}
        assert "SkipLayerNormalization" not in ran and "LayerNormalization" in ran, (backend, ran)


async def test_a_long_querys_windows_are_served_before_queued_bulk_work(
    onnx_embedders: dict[str, OnnxEmbedder],
) -> None:
    """A pasted paragraph is more windows than a "small" request, but a user is waiting for it: it
    must not queue behind an ingest's batches (it did: 5+ windows counted as bulk work)."""
    from domain.retrieval.long_query import embed_any_length

    model = onnx_embedders["onnx-int8"]
    bulk = model.submit(SENTENCES * 150)  # an ingest's worth of chunks, queued first
    paragraph = " ".join(f"{s} (part {i})" for i, s in enumerate(SENTENCES * 24))
    assert model.count_tokens(paragraph) > 5 * model.max_tokens  # more windows than a small request
    vector = await embed_any_length(model, paragraph)
    assert vector.shape == (model.dim,)
    assert not bulk.done(), "the paragraph waited for the bulk work queued before it"
    assert (await asyncio.wrap_future(bulk)).shape == (len(SENTENCES) * 150, model.dim)
