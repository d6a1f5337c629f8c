"""`ragql ingest PATH --tenant T` and `ragql import-feedback FILE.jsonl --tenant T`.

Both go through the job path the API uses: the input becomes one job per 10,000 items, queued in
PostgreSQL, and this process runs a worker of its own, so the jobs run with or without a
`ragql worker` elsewhere (whichever worker dequeues a job first runs it). Progress is read from the
job rows, on each of the job's NOTIFYs, so the bar is right whoever runs the job.

Interrupted (Ctrl-C), the worker here writes the documents already embedded and hands the job
back; run the same command again and it continues the same job (found by a fingerprint of the input), skipping
every document already stored. Inputs carry an externalId (a file's relative path, a JSONL
line's `externalId`/`_id`, else `<file>:<line>`), so even a fresh job of the same input stores
nothing twice: unchanged documents are neither embedded nor written again."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.bootstrap import open_worker_deps, worker_config
from api.settings import Settings
from api.worker import BackgroundWorker, Worker
from domain.documents.error_codes import DocumentErrorCode
from domain.documents.parsing import parse_upload
from domain.documents.validation import DocumentInput
from domain.errors import DomainError, StartupError
from domain.jobs import sentences_job, store
from domain.jobs.error_codes import JobErrorCode
from domain.jobs.feedback_job import FeedbackEventInput, feedback_items
from domain.jobs.items import document_items
from domain.jobs.model import MAX_JOB_ITEMS, ItemError, Job, JobKind, NewItem
from domain.jobs.progress import JobProgress
from domain.persistence.database import Database
from domain.providers.embedding import Embedder
from domain.tenancy import ensure_tenant

HIDDEN = (".", "_")


@dataclass(frozen=True)
class Source:
    """One input document and where it came from (shown next to its errors)."""

    label: str
    document: DocumentInput | None
    error: ItemError | None = None


def _folder(root: Path, max_bytes: int) -> Iterator[Source]:
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(HIDDEN) for part in p.relative_to(root).parts)
    )
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            with path.open("rb") as handle:
                # One byte past the limit tells a too-large file without reading all of it.
                data = handle.read(max_bytes + 1)
            title, text = parse_upload(path.name, data, max_bytes=max_bytes, path=rel)
        except DomainError as exc:
            yield Source(rel, None, ItemError(-1, rel, str(exc.code), exc.message))
            continue
        yield Source(rel, DocumentInput(title=title, text=text, external_id=f"file:{rel}"))


def _jsonl_document(obj: Any, label: str) -> DocumentInput:
    if not isinstance(obj, dict):
        raise DomainError("the line is not a JSON object")
    if "_id" in obj:  # BEIR: {"_id", "title", "text"}; the id is the externalId
        ident = str(obj["_id"])
        return DocumentInput(
            title=str(obj.get("title") or ident),
            text=str(obj.get("text") or ""),
            external_id=ident,
            metadata=obj.get("metadata"),
        )
    return DocumentInput(
        title=str(obj.get("title") or ""),
        text=str(obj.get("text") or ""),
        external_id=str(obj["externalId"]) if obj.get("externalId") else label,
        metadata=obj.get("metadata"),
    )


def _jsonl_lines(path: Path) -> Iterator[tuple[str, Any, ItemError | None]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            label = f"{path.name}:{number}"
            try:
                yield label, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield (
                    label,
                    None,
                    ItemError(-1, label, JobErrorCode.INVALID_JSON, f"line {number} is not JSON ({exc.msg})"),
                )


def _jsonl(path: Path) -> Iterator[Source]:
    for label, obj, error in _jsonl_lines(path):
        if error is not None:
            yield Source(label, None, error)
            continue
        try:
            yield Source(label, _jsonl_document(obj, label))
        except DomainError as exc:
            yield Source(label, None, ItemError(-1, label, DocumentErrorCode.INVALID_DOCUMENT, exc.message))


def read_sources(path: Path, *, max_bytes: int) -> list[Source]:
    if path.is_dir():
        return list(_folder(path, max_bytes))
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return list(_jsonl(path))
    if path.is_file():
        return list(_folder_one(path, max_bytes))
    raise StartupError(f"{path} is neither a folder nor a file; pass a folder of documents or a .jsonl file")


def _folder_one(path: Path, max_bytes: int) -> Iterator[Source]:
    for source in _folder(path.parent, max_bytes):
        if source.label == path.name:
            yield source


def _items(sources: list[Source], max_chars: int) -> list[NewItem]:
    """Job items in input order; a source that could not be read is a failed item from the start."""
    entries: list[DocumentInput | ItemError] = []
    for source in sources:
        if source.document is not None:
            entries.append(source.document)
        else:
            assert source.error is not None
            entries.append(source.error)
    return document_items(entries, "documents", max_chars=max_chars)


def fingerprint(tenant: str, kind: JobKind, items: list[NewItem]) -> str:
    digest = hashlib.sha256(f"{tenant}\x1f{kind.value}".encode())
    for item in items:
        digest.update(json.dumps(item.payload, sort_keys=True, default=str).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


@dataclass
class RunTotals:
    items: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    chunks_this_run: int = 0
    seconds: float = 0.0
    # Waiting for the jobs' sentence vectors afterwards (not in `seconds`).
    sentence_seconds: float = 0.0
    interrupted: bool = False
    errors: list[tuple[str, ItemError]] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)

    def add(self, job: Job, chunks_this_run: int) -> None:
        self.items += job.items_total
        self.created += job.created
        self.updated += job.updated
        self.unchanged += job.unchanged
        self.failed += job.failed
        self.chunks_this_run += chunks_this_run
        self.jobs.append(job)

    def last_line(self) -> str:
        rate = self.chunks_this_run / self.seconds if self.seconds > 0 else 0.0
        return (
            f"ingested {self.items} documents ({self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.failed} failed), {self.chunks_this_run} chunks in "
            f"{self.seconds:.1f} s ({rate:.1f} chunks/s)"
        )


async def _open_or_resume(db: Database, tenant: str, kind: JobKind, items: list[NewItem], console: Console) -> Job:
    fp = fingerprint(tenant, kind, items)
    found = await store.find_unfinished(db, tenant, fp)
    if found is not None:
        console.print(f"continuing job {found.id}: {found.items_done} of {found.items_total} already done")
        return found
    return await store.create(
        db,
        tenant,
        kind,
        items,
        created_by="cli",
        field_prefix="documents" if kind is JobKind.DOCUMENTS else "events",
        fingerprint=fp,
    )


async def _follow(
    db: Database, feed: JobProgress, job: Job, progress: Progress, task: Any, interrupted: asyncio.Event
) -> Job:
    """Follow the job row until it ends (or Ctrl-C), waking on its NOTIFY; the bar shows items,
    items/s and chunks/s."""
    start = time.monotonic()
    done0, chunks0 = job.items_done, job.chunks_embedded
    async with feed.watch(job.id) as watch:
        while True:
            job = await store.get(db, job.tenant_id, job.id)
            elapsed = max(time.monotonic() - start, 1e-6)
            progress.update(
                task,
                completed=job.items_done,
                rate=f"{(job.items_done - done0) / elapsed:.1f}",
                chunk_rate=f"{(job.chunks_embedded - chunks0) / elapsed:.1f}",
            )
            if job.finished or interrupted.is_set():
                return job
            waiting = asyncio.ensure_future(watch.next())
            stopping = asyncio.ensure_future(interrupted.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            stopping.cancel()


def _progress(console: Console, unit: str, with_chunks: bool) -> Progress:
    columns: list[Any] = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn(f"{{task.fields[rate]}} {unit}/s"),
    ]
    if with_chunks:
        columns.append(TextColumn("{task.fields[chunk_rate]} chunks/s"))
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=console)


async def run_jobs(
    settings: Settings,
    tenant: str,
    kind: JobKind,
    items: list[NewItem],
    labels: list[str],
    console: Console,
    *,
    embedder: Embedder | None = None,
    sentences: bool = True,
) -> RunTotals:
    """`embedder`: one already loaded (`ragql eval` searches with the same one afterwards).
    `sentences`: wait for the jobs' sentence vectors too (`ragql eval` does not need them)."""
    deps, close = await open_worker_deps(settings, embedder=embedder)
    totals = RunTotals()
    interrupted = asyncio.Event()
    worker = BackgroundWorker(Worker(deps, worker_config(settings)))
    feed = JobProgress(deps.db.url, fallback_s=settings.job_progress_fallback_s)
    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:
        console.print(
            "[yellow]interrupted: writing the documents already embedded; run the same command again to continue"
        )
        interrupted.set()
        worker.worker.stop()

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    loop.add_signal_handler(signal.SIGTERM, on_interrupt)
    started = time.monotonic()
    try:
        await ensure_tenant(deps.db, tenant)
        worker.start()
        unit = "docs" if kind is JobKind.DOCUMENTS else "events"
        with _progress(console, unit, kind is JobKind.DOCUMENTS) as progress:
            for offset in range(0, len(items), MAX_JOB_ITEMS):
                part = items[offset : offset + MAX_JOB_ITEMS]
                job = await _open_or_resume(deps.db, tenant, kind, part, console)
                chunks_before = job.chunks_embedded
                task = progress.add_task(
                    f"job {str(job.id)[:8]}",
                    total=job.items_total,
                    completed=job.items_done,
                    rate="0.0",
                    chunk_rate="0.0",
                )
                job = await _follow(deps.db, feed, job, progress, task, interrupted)
                if interrupted.is_set():
                    await worker.stop()
                    job = await store.get(deps.db, tenant, job.id)
                totals.add(job, job.chunks_embedded - chunks_before)
                for error in await store.errors(deps.db, tenant, job.id, first=100):
                    index = offset + error.index
                    label = labels[index] if 0 <= index < len(labels) else "-"
                    totals.errors.append((label, error))
                if interrupted.is_set():
                    totals.interrupted = True
                    break
            totals.seconds = time.monotonic() - started
            _encoder_line(deps.embedder, "documents' chunks", totals.seconds, console)
            if kind is JobKind.DOCUMENTS and sentences and not interrupted.is_set():
                await _await_sentences(deps.db, tenant, totals, console, interrupted)
                _encoder_line(deps.embedder, "sentences", totals.sentence_seconds, console)
    finally:
        totals.seconds = totals.seconds or time.monotonic() - started
        await worker.stop()
        await feed.aclose()
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
        await close()
    return totals


def _encoder_line(embedder: Embedder, what: str, seconds: float, console: Console) -> None:
    """What the local encoder did meanwhile (rows, tokens, padding, how busy its lanes were): where
    an ingest's time goes, beside the database. Other embedders keep no such counts."""
    reset = getattr(embedder, "reset_stats", None)
    if reset is None or seconds <= 0:
        return
    stats = reset()
    if not stats.slots:
        return
    console.print(
        f"encoder, {what}: {stats.rows} texts, {stats.tokens} tokens ({stats.tokens / seconds:.0f}/s), "
        f"padding waste {1 - stats.tokens / stats.slots:.1%}, {stats.batches} batches, "
        f"lanes busy {stats.busy_s:.1f} s of {seconds:.1f} s x {getattr(embedder, 'lanes', 1)}",
        markup=False,
        highlight=False,
    )


async def _await_sentences(
    db: Database, tenant: str, totals: RunTotals, console: Console, interrupted: asyncio.Event
) -> None:
    """Each finished job queued the sentence vectors of its documents (domain/jobs/sentences_job.py);
    wait for them, so the store is complete on return. Not in the ingest's time and rate: that is
    the documents' own embedding. Ctrl-C leaves them queued for the next worker."""
    ids = [job.id for job in totals.jobs if job.chunks_embedded > 0]
    if not ids:
        return
    started = time.monotonic()
    while not interrupted.is_set() and await sentences_job.pending(db, tenant, ids):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(interrupted.wait(), timeout=0.5)
    totals.sentence_seconds = time.monotonic() - started
    state = "queued for the next worker" if interrupted.is_set() else f"stored in {totals.sentence_seconds:.1f} s"
    console.print(f"sentence vectors (for answers) of the new chunks: {state}")


def _summary(console: Console, totals: RunTotals, kind: JobKind) -> None:
    table = Table(title="summary")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    names = (
        ("created", "updated", "unchanged", "failed")
        if kind is JobKind.DOCUMENTS
        else ("stored", "duplicate", "failed")
    )
    values = (
        (totals.created, totals.updated, totals.unchanged, totals.failed)
        if kind is JobKind.DOCUMENTS
        else (totals.created, totals.unchanged, totals.failed)
    )
    for name, value in zip(names, values, strict=True):
        table.add_row(name, str(value))
    console.print(table)
    if totals.errors:
        errors = Table(title=f"failed ({len(totals.errors)} shown)")
        for column in ("input", "path", "code", "message"):
            errors.add_column(column)
        for label, error in totals.errors[:50]:
            errors.add_row(label, error.field or "", error.code, error.message)
        console.print(errors)


async def ingest_path(
    settings: Settings, path: Path, tenant: str, console: Console | None = None, *, sentences: bool = True
) -> RunTotals:
    console = console or Console(stderr=True)
    sources = read_sources(path, max_bytes=settings.max_upload_bytes)
    if not sources:
        raise StartupError(f"{path} holds no documents (.txt, .md, .html, .pdf, or a .jsonl file)")
    items = _items(sources, settings.max_document_chars)
    totals = await run_jobs(
        settings, tenant, JobKind.DOCUMENTS, items, [s.label for s in sources], console, sentences=sentences
    )
    _summary(console, totals, JobKind.DOCUMENTS)
    return totals


def _event(obj: Any) -> FeedbackEventInput:
    if not isinstance(obj, dict):
        raise DomainError("the line is not a JSON object")
    at = obj.get("occurredAt") or obj.get("timestamp")
    try:
        occurred = datetime.fromisoformat(str(at).replace("Z", "+00:00")) if at else None
    except ValueError as exc:
        raise DomainError(f"occurredAt {at!r} is not an ISO 8601 time") from exc
    doc = obj.get("documentId")
    try:
        document_id = uuid.UUID(str(doc)) if doc else None
    except ValueError as exc:
        raise DomainError(f"documentId {doc!r} is not a document UUID; use documentExternalId") from exc
    return FeedbackEventInput(
        user_id=str(obj.get("userId") or ""),
        kind=str(obj.get("kind") or ""),
        document_id=document_id,
        document_external_id=obj.get("documentExternalId"),
        rating=obj.get("rating"),
        idempotency_key=obj.get("idempotencyKey"),
        occurred_at=occurred,
    )


async def import_feedback_file(
    settings: Settings, path: Path, tenant: str, console: Console | None = None
) -> RunTotals:
    console = console or Console(stderr=True)
    lines = list(_jsonl_lines(path))
    events: list[FeedbackEventInput] = []
    early: dict[int, ItemError] = {}
    for i, (label, obj, error) in enumerate(lines):
        try:
            if error is not None:
                raise DomainError(error.message)
            events.append(_event(obj))
        except DomainError as exc:
            early[i] = ItemError(i, f"events.{i}", JobErrorCode.INVALID_EVENT, f"{label}: {exc.message}")
            events.append(FeedbackEventInput(user_id="", kind=""))
    items = [NewItem(None, early[i]) if i in early else item for i, item in enumerate(feedback_items(events))]
    totals = await run_jobs(settings, tenant, JobKind.FEEDBACK, items, [label for label, _, _ in lines], console)
    _summary(console, totals, JobKind.FEEDBACK)
    return totals


def imported_line(totals: RunTotals) -> str:
    return (
        f"imported {totals.items} events ({totals.created} stored, {totals.unchanged} duplicates, "
        f"{totals.failed} failed) in {totals.seconds:.1f} s"
    )
