"""`ragql search "text"` and `ragql ask "question"`: the API's search and answers, in a terminal.

Both run against the configured database (the embedded one by default) through the same services
`ragql serve` builds, so what they print is what the GraphQL API would return."""

from __future__ import annotations

import html
import json
import re
import sys
from contextlib import aclosing
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.table import Table
from rich.text import Text

from api.cli.core import err, fail, out, run, settings, state
from domain.retrieval.filters import Condition, MetadataFilter

if TYPE_CHECKING:
    from domain.answers.service import Done

Mode = Literal["HYBRID", "DENSE", "KEYWORD"]
Rerank = Literal["NONE", "COHERE", "LLM"]
# FIELD OP VALUE, the longest operators first so ">=" is not read as ">" then "=".
_WHERE = re.compile(r"^\s*(?P<field>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>>=|<=|!=|=|>|<|~)\s*(?P<value>.*)$")
_OPS = {"=": "EQ", "!=": "NE", ">": "GT", ">=": "GTE", "<": "LT", "<=": "LTE", "~": "CONTAINS"}
_MARK = re.compile(r"</?mark>")

WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        "-w",
        help="a filter condition, repeatable (all must hold): genre=Drama, year>=2000, tags~space, "
        'genre=["Drama","Comedy"] (IN); values are JSON when they parse as JSON',
    ),
]


def parse_where(conditions: list[str]) -> MetadataFilter | None:
    out_conditions = []
    for raw in conditions:
        m = _WHERE.match(raw)
        if m is None:
            fail(f"--where {raw!r} is not FIELD OP VALUE (OP one of = != > >= < <= ~), e.g. --where year>=2000")
        value: Any = m["value"].strip()
        try:
            value = json.loads(value)
        except ValueError:
            pass  # a bare word is a string: genre=Drama
        op = _OPS[m["op"]]
        if op == "EQ" and isinstance(value, list):
            op = "IN"
        out_conditions.append(Condition(m["field"], op, value))
    return MetadataFilter(all=tuple(out_conditions)) if out_conditions else None


def snippet_text(snippet: str) -> Text:
    """The API's snippet (HTML-escaped, query terms in <mark>) as terminal text, terms highlighted."""
    text = Text()
    marked = False
    pos = 0
    for m in _MARK.finditer(snippet):
        text.append(html.unescape(snippet[pos : m.start()]), style="bold yellow" if marked else None)
        marked = m.group() == "<mark>"
        pos = m.end()
    text.append(html.unescape(snippet[pos:]), style="bold yellow" if marked else None)
    return text


def _score(value: float | None, rank: int | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f} (#{rank})" if rank is not None else f"{value:.3f}"


def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="what to look for")],
    tenant: Annotated[str | None, typer.Option(help="default: RAGQL_DEV_TENANT")] = None,
    mode: Annotated[Mode, typer.Option(case_sensitive=False, help="dense, keyword (BM25) or both fused")] = "HYBRID",
    first: Annotated[int, typer.Option("--first", "-n", help="how many hits")] = 10,
    where: WhereOption = None,
    rerank: Annotated[Rerank, typer.Option(case_sensitive=False, help="re-rank the fused list")] = "NONE",
) -> None:
    """Search, and show each hit with its score breakdown (dense, keyword, fused, re-rank)."""
    from api.bootstrap import build_services
    from domain.retrieval.search import SearchOptions

    s = settings(ctx)
    options = SearchOptions(mode=mode, filter=parse_where(where or []), rerank=rerank)

    async def go() -> None:
        with err().status("starting (database, model) …"):
            services, close = await build_services(s, embedder=state(ctx).embedder)
        try:
            result = await services.searching.search(tenant or s.dev_tenant, query, first, options)
        finally:
            await close()
        table = Table(
            title=f"{len(result.hits)} hits for {query!r} ({options.mode.lower()}, {result.fusion} "
            f"α={result.alpha:.2f}, {result.total_candidates} candidates, {result.took_ms:.0f} ms)",
            title_justify="left",
        )
        table.add_column("#", justify="right")
        table.add_column("title")
        table.add_column("score", justify="right")
        table.add_column("dense", justify="right")
        table.add_column("keyword", justify="right")
        table.add_column("fused", justify="right")
        if options.rerank != "NONE":
            table.add_column("rerank", justify="right")
        table.add_column("snippet", ratio=1)
        for i, h in enumerate(result.hits, start=1):
            row: list[str | Text] = [
                str(i),
                Text(h.document.title),
                f"{h.score:.3f}",
                _score(h.dense, h.dense_rank),
                _score(h.keyword, h.keyword_rank),
                _score(h.fused, h.fused_rank),
            ]
            if options.rerank != "NONE":
                row.append(_score(h.rerank, None))
            row.append(snippet_text(h.snippet))
            table.add_row(*row)
        out().print(table)
        if result.rerank is not None and result.rerank.fallback_reason:
            err().print(f"re-ranking fell back: {result.rerank.fallback_reason}", markup=False)

    run(go())


def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="a question about the documents")],
    tenant: Annotated[str | None, typer.Option(help="default: RAGQL_DEV_TENANT")] = None,
    sources: Annotated[int, typer.Option(help="how many passages to answer from")] = 5,
    where: WhereOption = None,
) -> None:
    """Answer from the documents, streaming the text as it is written, then list the cited sources."""
    from api.bootstrap import build_services
    from domain.answers.service import AnswerRequest, Delta, Done, Failed

    s = settings(ctx)
    request = AnswerRequest(question=question, sources=sources, filter=parse_where(where or []))

    async def go() -> int:
        with err().status("starting (database, model) …"):
            services, close = await build_services(s, embedder=state(ctx).embedder)
        try:
            t = tenant or s.dev_tenant
            prepared = await services.answering.prepare(t, request)
            async with aclosing(services.answering.events(t, prepared)) as events:
                async for event in events:
                    if isinstance(event, Delta):
                        # Straight to stdout and flushed: each token shows the moment it arrives.
                        sys.stdout.write(event.text)
                        sys.stdout.flush()
                    elif isinstance(event, Failed):
                        sys.stdout.write("\n")
                        err().print(f"[bold red]ragql:[/] {event.code}: {event.message}")
                        return 1
                    elif isinstance(event, Done):
                        sys.stdout.write("\n")
                        _print_done(event)
        finally:
            await close()
        return 0

    code = run(go())
    if code:
        raise typer.Exit(code)


def _print_done(done: Done) -> None:
    table = Table(title="sources cited", title_justify="left")
    table.add_column(Text("[n]"), justify="right")
    table.add_column("title")
    table.add_column("document")
    for c in done.citations:
        doc = c.hit.document if c.hit is not None else None
        table.add_row(Text(f"[{c.number}]"), Text(c.title), (doc.external_id or str(doc.id)) if doc else "selection")
    if done.citations:
        out().print(table)
    notes = "; ".join(done.notes)
    err().print(
        f"{done.generator} generator, {done.took_ms:.0f} ms" + (f"; {notes}" if notes else ""),
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.command()(search)
    app.command()(ask)
