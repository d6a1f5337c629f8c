"""`ragql eval PATH`: retrieval quality on any BEIR-format folder, through the served code.

The corpus is ingested as jobs into a tenant (the path `ragql ingest` takes: chunking, embedding,
the tenant's own BM25 partition), each judged query is searched through the same search service
the API uses, and nDCG@10 and Recall@100 are printed per mode and fusion. Without `--tenant` the
tenant is a scratch one, dropped afterwards; with it, the tenant is kept, and a second run embeds
nothing (ingest is idempotent on the BEIR ids)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from api.bootstrap import build_embedder, build_services
from api.ingest_command import RunTotals, run_jobs
from api.settings import Settings
from domain.documents.validation import DocumentInput
from domain.errors import StartupError
from domain.evaluation.beir import BeirDocument, load_beir
from domain.evaluation.runs import RECALL_AT, RunScore, RunSpec, evaluate, run_specs
from domain.jobs.items import document_items
from domain.jobs.model import JobKind
from domain.providers.embedding import Embedder
from domain.retrieval.search import SearchOptions
from domain.tenancy import drop_tenant


@dataclass(frozen=True)
class EvalOptions:
    split: str = "test"
    modes: Sequence[str] = ("KEYWORD", "DENSE", "HYBRID")
    fusions: Sequence[str] = ("ZSCORE", "RRF", "RELATIVE_SCORE", "LEARNED")
    ignore_identical_ids: bool = False
    tenant: str | None = None  # None: a scratch tenant, dropped at the end
    keep: bool = False  # keep the scratch tenant (to look at it, or to run again without embedding)


@dataclass
class EvalReport:
    dataset: str
    split: str
    tenant: str
    dropped: bool
    documents: int
    queries: int
    ingest: RunTotals
    scores: list[RunScore]
    seconds: float

    def lines(self) -> list[str]:
        """One plain line per run (what scripts read), as `make eval` prints them."""
        return [
            f"{self.dataset} {s.spec.label.replace(' ', '-')} ndcg@10={s.ndcg_at_10:.4f} "
            f"recall@100={s.recall_at_100:.4f} queries={s.queries}"
            for s in self.scores
        ]


def _document(doc: BeirDocument) -> DocumentInput:
    # As `make eval` ingests SciFact: a document without text is searched by its title.
    return DocumentInput(title=doc.title or doc.id, text=doc.text or doc.title or doc.id, external_id=doc.id)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} queries/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


async def evaluate_folder(
    settings: Settings, path: Path, options: EvalOptions, console: Console, *, embedder: Embedder | None = None
) -> EvalReport:
    started = time.monotonic()
    beir = load_beir(path, options.split)  # a malformed folder fails here, before anything is written
    specs = run_specs(options.modes, options.fusions)
    scratch = options.tenant is None
    tenant = options.tenant or f"eval-{uuid.uuid4().hex[:12]}"
    emb = embedder or build_embedder(settings)
    services, close = await build_services(settings, embedder=emb)
    dropped = False
    try:
        console.print(f"ingesting {len(beir.corpus)} documents into tenant {tenant!r} (as `ragql ingest`)")
        docs = [_document(d) for d in beir.corpus]
        items = document_items(docs, "documents", max_chars=settings.max_document_chars)
        labels = [f"corpus.jsonl:{d.id}" for d in beir.corpus]
        # Answers are not scored here: the jobs' sentence vectors are left to their follow-up jobs.
        totals = await run_jobs(
            settings, tenant, JobKind.DOCUMENTS, items, labels, console, embedder=emb, sentences=False
        )
        console.print(totals.last_line(), markup=False, highlight=False)
        if totals.interrupted:
            raise StartupError("interrupted while ingesting; run the same command again to continue")
        if totals.failed:
            # Said, not hidden: a judged document that was not stored counts as a miss in every run.
            label, error = totals.errors[0] if totals.errors else ("-", None)
            detail = f"; first: {label}: {error.code} {error.message}" if error else ""
            console.print(
                f"[yellow]{totals.failed} of {totals.items} documents could not be ingested and count as misses{detail}"
            )
        # With the identical-id rule one hit may be dropped: fetch one more so 100 remain.
        depth = RECALL_AT + 1 if options.ignore_identical_ids else RECALL_AT

        async def search(query: str, spec: RunSpec) -> list[str]:
            result = await services.searching.retrieve(
                tenant,
                query,
                depth,
                SearchOptions(mode=spec.mode, fusion=spec.fusion),
            )
            return [h.document.external_id or str(h.document.id) for h in result.hits]

        queries = [q for q in beir.judged_queries() if beir.queries[q].strip()]
        with _progress(console) as progress:
            task = progress.add_task("searching", total=len(queries) * len(specs), rate="0.0")
            t0 = time.monotonic()

            def tick() -> None:
                progress.advance(task)
                done = progress.tasks[0].completed
                progress.update(task, rate=f"{done / max(time.monotonic() - t0, 1e-6):.1f}")

            scores = await evaluate(
                beir, specs, search, ignore_identical_ids=options.ignore_identical_ids, on_query=tick
            )
    finally:
        if scratch and not options.keep:
            await drop_tenant(services.db, tenant)
            dropped = True
        await close()
    return EvalReport(
        dataset=path.name,
        split=options.split,
        tenant=tenant,
        dropped=dropped,
        documents=len(beir.corpus),
        queries=len(queries),
        ingest=totals,
        scores=scores,
        seconds=time.monotonic() - started,
    )


def score_table(report: EvalReport) -> Table:
    table = Table(
        title=f"{report.dataset} ({report.split}: {report.queries} queries, {report.documents} documents)",
        title_justify="left",
    )
    for column, justify in (("mode", "left"), ("fusion", "left"), ("nDCG@10", "right"), ("Recall@100", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    best = max(s.ndcg_at_10 for s in report.scores)
    for s in report.scores:
        ndcg = f"{s.ndcg_at_10:.4f}"
        table.add_row(
            s.spec.mode.lower(),
            s.spec.fusion or "–",
            f"[bold]{ndcg}[/]" if s.ndcg_at_10 == best else ndcg,
            f"{s.recall_at_100:.4f}",
        )
    return table
