"""`ragql eval PATH`: nDCG@10 and Recall@100 of every search mode on a BEIR-format folder. The work
is in api.eval_command; this parses options and prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.core import err, out, run, settings, state
from domain.evaluation.beir import DEFAULT_DATASET
from domain.evaluation.runs import FUSIONS, MODES


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def eval_command(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv (default: SciFact)"),
    ] = DEFAULT_DATASET,
    split: Annotated[str, typer.Option(help="the qrels file to score: qrels/<split>.tsv")] = "test",
    modes: Annotated[str, typer.Option(help=f"comma-separated, of {','.join(MODES)}")] = ",".join(MODES),
    fusions: Annotated[str, typer.Option(help=f"hybrid's fusion methods, of {','.join(FUSIONS)}")] = ",".join(FUSIONS),
    ignore_identical_ids: Annotated[
        bool,
        typer.Option(help="drop a hit whose id is the query's id (BEIR's rule for sets whose queries are documents)"),
    ] = False,
    tenant: Annotated[
        str | None,
        typer.Option(help="ingest into this tenant and keep it (a second run embeds nothing); default: a scratch one"),
    ] = None,
    keep: Annotated[bool, typer.Option(help="keep the scratch tenant instead of dropping it")] = False,
) -> None:
    """Measure retrieval on a BEIR folder: ingest it into a scratch tenant, score every mode."""
    from api.eval_command import EvalOptions, evaluate_folder, score_table

    options = EvalOptions(
        split=split,
        modes=_names(modes),
        fusions=_names(fusions),
        ignore_identical_ids=ignore_identical_ids,
        tenant=tenant,
        keep=keep,
    )
    console = err()
    report = run(evaluate_folder(settings(ctx), path, options, console, embedder=state(ctx).embedder))
    out().print(score_table(report))
    # Plain prints: one unwrapped line per run, whatever the terminal width (scripts read them).
    for line in report.lines():
        print(line)
    where = "dropped" if report.dropped else "kept"
    print(f"tenant {report.tenant} {where}; {report.seconds:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
