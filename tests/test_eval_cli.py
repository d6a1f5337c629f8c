"""`ragql eval PATH` through typer's CliRunner, against the session's real PostgreSQL and the real
local model: a tiny BEIR folder made here is ingested through the job path, every mode is scored,
the scratch tenant is dropped; BEIR's identical-id rule; a malformed folder is a coded error."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from api.cli import app
from api.cli.core import CliState
from api.settings import Settings
from domain.persistence.database import Database
from domain.providers.embedding import LocalEmbedder
from domain.retrieval.tenant_index import chunk_partition

runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})
LINE = re.compile(r"^(\S+) (\S+) ndcg@10=(\d\.\d{4}) recall@100=(\d\.\d{4}) queries=(\d+)$", re.M)

DOCS = {
    "d1": (
        "Volcanic ash and aircraft",
        "Volcanic ash clouds damage jet engines, so flights are grounded near eruptions.",
    ),
    "d2": ("Sourdough", "A sourdough starter of flour and water ferments with wild yeast and lactobacilli."),
    "d3": ("Coral reefs", "Coral reefs bleach when warm seawater makes corals expel their symbiotic algae."),
    "d4": ("Tide pools", "Tide pools hold starfish, anemones and hermit crabs between the tides."),
    "d5": ("Glaciers", "Glaciers retreat as summer melting outpaces winter snowfall on the ice sheet."),
    # A query that is also a document (as in Quora or ArguAna): without BEIR's rule it finds itself first.
    "q1": ("q1", "why are flights grounded when a volcano erupts and ash clouds spread"),
}
QUERIES = {
    "q1": "why are flights grounded when a volcano erupts and ash clouds spread",
    "q2": "sourdough starter wild yeast fermentation",
    "q3": "coral bleaching warm seawater algae",
    "q4": "unjudged query about glaciers",  # not in qrels: not scored
}
QRELS = [("q1", "d1", 1), ("q2", "d2", 1), ("q3", "d3", 2)]


def beir_folder(root: Path, *, corpus_lines: list[str] | None = None, queries: bool = True) -> Path:
    folder = root / f"beir-{uuid.uuid4().hex[:8]}"
    (folder / "qrels").mkdir(parents=True)
    lines = corpus_lines or [json.dumps({"_id": i, "title": t, "text": x}) for i, (t, x) in DOCS.items()]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    if queries:
        (folder / "queries.jsonl").write_text(
            "\n".join(json.dumps({"_id": i, "text": q}) for i, q in QUERIES.items()) + "\n"
        )
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS)
    )
    return folder


@pytest.fixture
def cli_state(pg_url: str, tmp_root: Path, embedder: LocalEmbedder) -> CliState:
    return CliState(settings=Settings(database_url=pg_url, data_dir=tmp_root, load_demo=False), embedder=embedder)


def scores(output: str) -> dict[str, tuple[float, float, int]]:
    return {m[2]: (float(m[3]), float(m[4]), int(m[5])) for m in LINE.finditer(output)}


async def _tenant_state(pg_url: str, tenant: str) -> tuple[int, int, int, bool]:
    """(tenant rows, documents, ingestion jobs, partition exists) for one tenant."""
    db = Database(pg_url)
    try:
        async with db.session(tenant) as s:
            tenants = (await s.execute(text("SELECT count(*) FROM tenants WHERE id = :t"), {"t": tenant})).scalar_one()
            docs = (
                await s.execute(text("SELECT count(*) FROM documents WHERE tenant_id = :t"), {"t": tenant})
            ).scalar_one()
            jobs = (
                await s.execute(text("SELECT count(*) FROM ingestion_jobs WHERE tenant_id = :t"), {"t": tenant})
            ).scalar_one()
            part = (
                await s.execute(text("SELECT to_regclass(:p) IS NOT NULL"), {"p": chunk_partition(tenant)})
            ).scalar_one()
        return int(tenants), int(docs), int(jobs), bool(part)
    finally:
        await db.dispose()


def test_eval_scores_every_mode_and_drops_the_scratch_tenant(cli_state: CliState, tmp_root: Path, pg_url: str) -> None:
    folder = beir_folder(tmp_root)
    result = runner.invoke(app, ["eval", str(folder), "--ignore-identical-ids"], obj=cli_state)
    assert result.exit_code == 0, result.output
    got = scores(result.output)
    assert set(got) == {"keyword", "dense", "hybrid-ZSCORE", "hybrid-RRF", "hybrid-RELATIVE_SCORE", "hybrid-LEARNED"}
    # Three judged queries (q4 has no qrels), each with its one relevant document first.
    assert all(n == 3 for _, _, n in got.values())
    assert got["keyword"][:2] == (1.0, 1.0) and got["hybrid-ZSCORE"][:2] == (1.0, 1.0)
    assert "searching" in result.output and "queries/s" in result.output  # the progress bar
    assert "nDCG@10" in result.output and "Recall@100" in result.output  # the table
    tenant = re.search(r"^tenant (eval-[0-9a-f]{12}) dropped;", result.output, re.M)
    assert tenant, result.output
    assert asyncio.run(_tenant_state(pg_url, tenant[1])) == (0, 0, 0, False)


def test_identical_ids_rule_and_a_kept_tenant(cli_state: CliState, tmp_root: Path, pg_url: str) -> None:
    """Without the rule, q1 finds the document that is itself first and scores below 1; with it,
    that hit is dropped. A named tenant is kept, holds the corpus from an ingestion job, and a
    second run embeds nothing."""
    folder = beir_folder(tmp_root)
    tenant = f"evalkept-{uuid.uuid4().hex[:8]}"
    args = ["eval", str(folder), "--modes", "keyword,dense", "--tenant", tenant]
    plain = runner.invoke(app, args, obj=cli_state)
    assert plain.exit_code == 0, plain.output
    ruled = runner.invoke(app, [*args, "--ignore-identical-ids"], obj=cli_state)
    assert ruled.exit_code == 0, ruled.output
    before, after = scores(plain.output), scores(ruled.output)
    assert set(before) == set(after) == {"keyword", "dense"}
    for mode in ("keyword", "dense"):
        assert before[mode][0] < 1.0  # q1's own document outranks d1
        assert after[mode][0] == 1.0
    assert f"tenant {tenant} kept" in ruled.output
    assert "(0 created, 0 updated, 6 unchanged, 0 failed), 0 chunks" in ruled.output
    tenants, docs, jobs, partition = asyncio.run(_tenant_state(pg_url, tenant))
    assert (tenants, docs, partition) == (1, len(DOCS), True) and jobs >= 1


def test_a_malformed_folder_is_a_coded_error_and_writes_nothing(cli_state: CliState, tmp_root: Path) -> None:
    missing = beir_folder(tmp_root, queries=False)
    result = runner.invoke(app, ["eval", str(missing)], obj=cli_state)
    assert result.exit_code == 2
    assert "DATASET_FILE_MISSING" in result.output and "queries.jsonl" in result.output

    good = json.dumps({"_id": "a", "title": "A", "text": "alpha"})
    bad_json = beir_folder(tmp_root, corpus_lines=[good, good.replace('"a"', '"b"'), '{"_id": "c", "title": '])
    result = runner.invoke(app, ["eval", str(bad_json)], obj=cli_state)
    assert result.exit_code == 2
    assert "DATASET_INVALID_LINE" in result.output and "corpus.jsonl line 3" in result.output

    no_id = beir_folder(tmp_root, corpus_lines=[good, json.dumps({"title": "no id", "text": "x"})])
    result = runner.invoke(app, ["eval", str(no_id)], obj=cli_state)
    assert result.exit_code == 2 and "corpus.jsonl line 2" in result.output and "_id" in result.output

    result = runner.invoke(app, ["eval", str(tmp_root / "no-such-folder")], obj=cli_state)
    assert result.exit_code == 2 and "DATASET_NOT_FOUND" in result.output

    result = runner.invoke(app, ["eval", str(beir_folder(tmp_root)), "--modes", "semantic"], obj=cli_state)
    assert result.exit_code == 2 and "UNKNOWN_MODE" in result.output and "semantic" in result.output.lower()
    # Nothing was ingested for any of them: no eval tenant was created.
    assert "ingesting" not in result.output
