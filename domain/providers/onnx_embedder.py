"""all-MiniLM-L6-v2 on onnxruntime (fp32 or int8), fed by the model's own `tokenizers` tokenizer.

One encoder thread owns the session. Every `embed` call, from any event loop or ingest job, is a
request on its queue; the thread pools the texts of all waiting requests, sorts them by length and
runs batches capped in tokens (so padding stays small and memory bounded). Small requests (search
queries) go first, so a query never waits behind a large ingest for more than one batch. Bulk
requests (ingest) go oldest first by their `order`: an ingest pipeline that queues the next batch's
documents while it writes the last one gets its current batch back first, not pooled with the next.

Batches run on `threads` lanes at once, each on one core (a session with one intra-op thread, run
concurrently), not one batch split over every core: intra-op threads meet at a barrier after every
operator, so on a machine whose cores are shared (the event loop, PostgreSQL's index inserts) one
preempted thread held every other one back, spinning; lanes do not wait for each other.
onnxruntime releases the GIL, so the event loop stays free."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from domain.providers.embedding import Vectors
from domain.providers.onnx_export import MODEL_NAME, ExportedModel
from domain.providers.query_lru import DEFAULT_CAPACITY, QueryVectorLRU

# A request of at most this many texts counts as interactive and is served first.
_SMALL_REQUEST = 4
# A long interactive text (a pasted paragraph's window, long_query.py) that would pad the run so
# far by more than this many slots starts the next run instead. A paragraph's windows are full ones
# and a short tail: padded together, the tail cost a full window (the bench's median paragraph, 512
# word pieces, ran as 702 slots; 519 this way, for one more run of the session, about a
# millisecond). Typed queries (up to _TYPED_QUERY pieces) batch together as before.
_INTERACTIVE_PADDING = 48
_TYPED_QUERY = 64
# Such a long interactive text runs alone, one per run: a paragraph's windows then spread over the
# free lanes, so one pasted paragraph at a time is encoded on every core, not one batch on one
# core (a session's pieces per second is the same at one window per run as at four).
_SPREAD = True
# Session-time fusions left out. onnxruntime's CPU SkipLayerNormalization kernel is about 10x
# slower than the Add and LayerNormalization it would replace (onnx_export._quantize keeps them
# apart in the int8 graph, and this keeps the runtime from fusing them back, in both backends):
# without it the int8 encoder spends 24% of its time there instead of 5%.
UNFUSED = ["SkipLayerNormFusion"]


@dataclass
class _Request:
    texts: list[str]
    future: concurrent.futures.Future[Vectors]
    # (0, arrival) for an interactive request; (1, order) for bulk work, served oldest order
    # first; (2, order) for background work, served when nothing else waits.
    rank: tuple[int, int] = (1, 0)
    ids: list[list[int]] = field(default_factory=list)
    left: int = 0
    out: Vectors = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


@dataclass
class EncoderStats:
    """What the encoder ran since it started (or since `reset_stats`): rows, their tokens, the
    slots the batches padded them to, and the seconds the lanes spent in the session. For the
    bench: tokens over slots is the padding waste."""

    rows: int = 0
    tokens: int = 0
    slots: int = 0
    batches: int = 0
    busy_s: float = 0.0


def _priority(item: tuple[_Request, int]) -> tuple[int, int, int, int]:
    """Typed queries first, shortest first, so they share runs; then the windows of pasted
    paragraphs, oldest request first, in window order; then bulk work by its order, shortest text
    first, and background work last. Paragraphs went shortest window first before: at conc 16 the
    ones with longer windows waited behind every newer paragraph with shorter ones (`make bench`
    `search_long_query` conc 16 p99 7.8 s against a p50 of 0.22 s)."""
    request, i = item
    kind, order = request.rank
    length = len(request.ids[i])
    if kind == 0:
        return (0, 1, order, i) if length > _TYPED_QUERY else (0, 0, length, 0)
    return (kind, order, length, 0)


def _settle(future: concurrent.futures.Future[Vectors], result: Vectors | None, error: BaseException | None) -> None:
    """The caller may have cancelled meanwhile (a dropped request); that is not the encoder's error."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]
    except concurrent.futures.InvalidStateError:
        pass


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def open_session(model: ExportedModel, threads: int, *, save_optimized_to: Path | None = None) -> Any:
    """The encoder's session; `save_optimized_to` writes the graph as the runtime optimised it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if save_optimized_to is not None:
        options.optimized_model_filepath = str(save_optimized_to)
    return ort.InferenceSession(
        str(model.model_file), options, providers=["CPUExecutionProvider"], disabled_optimizers=UNFUSED
    )


class OnnxEmbedder:
    name = MODEL_NAME
    dim = 384

    def __init__(
        self,
        model: ExportedModel,
        *,
        threads: int = 0,
        max_batch_tokens: int = 2048,
        query_cache_size: int = DEFAULT_CAPACITY,
    ) -> None:
        """`threads`: lanes, each running its own batch on one core (0 = every core)."""
        from tokenizers import Tokenizer

        self.backend = model.backend
        self.max_tokens = model.max_tokens
        self._max_batch_tokens = max(max_batch_tokens, self.max_tokens)
        tokenizer = Tokenizer.from_file(str(model.tokenizer_file))
        # The shipped tokenizer.json pads every input to 128: pad per batch instead.
        tokenizer.no_padding()
        # Counting must see the whole text (long queries are windowed by the count, chunks are cut
        # by it), so it gets a copy without the truncation the encoder needs.
        counter = Tokenizer.from_str(tokenizer.to_str())
        counter.no_truncation()
        self._counter: Any = counter
        tokenizer.enable_truncation(max_length=self.max_tokens)
        self._tokenizer: Any = tokenizer
        self.lanes = threads or default_threads()
        # One session serves every lane: onnxruntime's run is thread-safe, each run on its thread.
        self._session: Any = open_session(model, 1)
        self._free_lanes = threading.Semaphore(self.lanes)
        self._runner = concurrent.futures.ThreadPoolExecutor(self.lanes, thread_name_prefix="ragql-encoder-lane")
        # Two lanes may fill rows of the same request.
        self._results = threading.Lock()
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._arrivals = itertools.count()
        self.query_cache = QueryVectorLRU(query_cache_size)
        self.stats = EncoderStats()
        self._thread = threading.Thread(target=self._serve, name="ragql-embedder", daemon=True)
        self._thread.start()

    def count_tokens(self, text: str) -> int:
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def submit(
        self, texts: list[str], *, order: int | None = None, interactive: bool = False, background: bool = False
    ) -> concurrent.futures.Future[Vectors]:
        """Thread-safe and loop-free: the future resolves on the encoder thread. Without `order`, a
        request of a few texts is interactive (served first) and a larger one is bulk work in
        arrival order; with it, the request is bulk work at that place in line. `background` work
        (ahead-of-time sentence vectors) waits until no bulk work is queued. Cancelling the
        future drops the texts not yet encoded."""
        future: concurrent.futures.Future[Vectors] = concurrent.futures.Future()
        if not texts:
            future.set_result(np.zeros((0, self.dim), dtype=np.float32))
            return future
        if background:
            rank = (2, next(self._arrivals))
        elif interactive or (order is None and len(texts) <= _SMALL_REQUEST):
            rank = (0, next(self._arrivals))
        else:
            rank = (1, next(self._arrivals) if order is None else order)
        self._queue.put(_Request(texts=list(texts), future=future, rank=rank))
        return future

    def reset_stats(self) -> EncoderStats:
        """The counts so far, and start again from zero."""
        with self._results:
            stats, self.stats = self.stats, EncoderStats()
        return stats

    def next_order(self) -> int:
        """A place in line for bulk requests submitted later with `order=`."""
        return next(self._arrivals)

    def encode(self, texts: list[str]) -> Vectors:
        return self.submit(texts).result()

    async def embed(self, texts: list[str]) -> Vectors:
        if len(texts) == 1:
            return (await self.embed_query(texts[0]))[None, :]
        return await asyncio.wrap_future(self.submit(texts))

    async def embed_interactive(self, texts: list[str]) -> Vectors:
        """Texts a user is waiting for, however many (a pasted paragraph's windows): served before
        bulk work, so a long query does not queue behind an ingest's batches."""
        return await asyncio.wrap_future(self.submit(texts, interactive=True))

    async def embed_query(self, text: str) -> Vectors:
        """Queries repeat a lot (paging, refinement), so keep a small LRU of their vectors."""

        async def encode() -> Vectors:
            return (await asyncio.wrap_future(self.submit([text])))[0]

        return await self.query_cache.recall(text, encode)

    # -- the encoder thread --------------------------------------------------------------------

    def _serve(self) -> None:
        """Picks the next batch when a lane is free (not before: what is queued meanwhile, an
        interactive request above all, can still go first) and hands it to that lane."""
        pending: list[tuple[_Request, int]] = []
        while True:
            self._free_lanes.acquire()
            if not pending:
                pending.extend(self._intake(self._queue.get()))
            while not self._queue.empty():
                pending.extend(self._intake(self._queue.get_nowait()))
            pending = [p for p in pending if not p[0].future.done()]
            if not pending:
                self._free_lanes.release()
                continue
            batch = self._next_batch(pending)
            taken = set(map(id, batch))
            pending = [p for p in pending if id(p) not in taken]
            self._runner.submit(self._run_on_lane, batch)

    def _run_on_lane(self, batch: list[tuple[_Request, int]]) -> None:
        try:
            self._run(batch)
        finally:
            self._free_lanes.release()

    def _intake(self, request: _Request) -> list[tuple[_Request, int]]:
        """Tokenised here, not in submit(): submit runs on the event loop."""
        try:
            request.ids = [e.ids for e in self._tokenizer.encode_batch(request.texts)]
        except Exception as exc:  # a bad input fails its own request, not the encoder
            _settle(request.future, None, exc)
            return []
        request.left = len(request.ids)
        request.out = np.zeros((len(request.ids), self.dim), dtype=np.float32)
        return [(request, i) for i in range(len(request.ids))]

    def _next_batch(self, pending: list[tuple[_Request, int]]) -> list[tuple[_Request, int]]:
        """Interactive requests first, then bulk work oldest first; within that, the shortest texts,
        as many as fit the token cap once padded (`_priority`)."""
        pending.sort(key=_priority)
        batch: list[tuple[_Request, int]] = []
        longest = 0
        for item in pending:
            length = len(item[0].ids[item[1]])
            if batch and max(longest, length) * (len(batch) + 1) > self._max_batch_tokens:
                break
            long_window = item[0].rank[0] == 0 and length > _TYPED_QUERY
            if long_window and batch and (_SPREAD or (length - longest) * len(batch) > _INTERACTIVE_PADDING):
                break  # a window much longer than the run so far waits for the next run rather than pad it
            batch.append(item)
            longest = max(longest, length)
            if long_window and _SPREAD:
                break  # and the paragraph's next window goes to the next free lane
        return batch

    def _run(self, batch: list[tuple[_Request, int]]) -> None:
        width = max(len(r.ids[i]) for r, i in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for row, (request, i) in enumerate(batch):
            tokens = request.ids[i]
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        started = time.perf_counter()
        try:
            vectors = self._session.run(
                None, {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
            )[0]
        except Exception as exc:
            for request, _ in batch:
                _settle(request.future, None, exc)
            return
        busy = time.perf_counter() - started
        done: list[_Request] = []
        with self._results:
            self.stats.rows += len(batch)
            self.stats.tokens += int(mask.sum())
            self.stats.slots += mask.size
            self.stats.batches += 1
            self.stats.busy_s += busy
            for row, (request, i) in enumerate(batch):
                request.out[i] = vectors[row]
                request.left -= 1
                if request.left == 0:
                    done.append(request)
        for request in done:
            _settle(request.future, request.out, None)
