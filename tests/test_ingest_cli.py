"""`ragql ingest` as a user runs it: a real process against the test database, on a folder with a bad
file, on JSONL (DocumentInput and BEIR lines), and interrupted with Ctrl-C, then run again."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from domain.persistence.database import Database
from tests.jobs_harness import REPO, word, worker_env

pytestmark = pytest.mark.slow
LAST_LINE = re.compile(
    r"^ingested (\d+) documents \((\d+) created, (\d+) updated, (\d+) unchanged, (\d+) failed\), "
    r"(\d+) chunks in (\d+\.\d) s \((\d+\.\d) chunks/s\)$"
)


def _ingest(pg_url: str, tmp_root: Path, path: Path, tenant: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "ingest", str(path), "--tenant", tenant],
        cwd=REPO,
        env=worker_env(pg_url, tmp_root),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _counts(result: subprocess.CompletedProcess[str]) -> tuple[int, ...]:
    last = result.stdout.strip().splitlines()[-1]
    match = LAST_LINE.match(last)
    assert match, f"unexpected last line {last!r}\n{result.stderr[-2000:]}"
    return tuple(int(g) for g in match.groups()[:6])


async def _documents(db: Database, tenant: str) -> dict[str, int]:
    async with db.session(tenant) as session:
        rows = (await session.execute(text("SELECT external_id, chunk_count FROM documents"))).all()
    return {str(e): int(c) for e, c in rows}


@pytest.fixture
def tenant() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


async def test_a_folder_with_a_bad_file(pg_url: str, tmp_root: Path, db: Database, tenant: str) -> None:
    folder = tmp_root / f"docs-{tenant}"
    (folder / "notes").mkdir(parents=True)
    (folder / "a.txt").write_text("Tide pools hold starfish and anemones between the tides.")
    (folder / "notes" / "b.md").write_text("# Sourdough\n\nA starter of flour and water ferments with wild yeast.")
    (folder / "c.html").write_text("<html><title>Reefs</title><body><p>Corals host fish.</p></body></html>")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    (folder / "empty.txt").write_text("   ")
    (folder / ".hidden.txt").write_text("skipped: hidden files are not documents")
    first = _ingest(pg_url, tmp_root, folder, tenant)
    assert first.returncode == 0, first.stderr[-3000:]
    assert _counts(first) == (5, 3, 0, 0, 2, 3)
    assert "broken.pdf" in first.stderr and "UNREADABLE_FILE" in first.stderr  # the summary names the file
    assert "docs/s" in first.stderr and "chunks/s" in first.stderr  # the progress bar's rates
    stored = await _documents(db, tenant)
    assert set(stored) == {"file:a.txt", "file:notes/b.md", "file:c.html"} and min(stored.values()) >= 1
    # Run again: nothing is embedded or stored twice.
    second = _ingest(pg_url, tmp_root, folder, tenant)
    assert _counts(second) == (5, 0, 0, 3, 2, 0)
    assert await _documents(db, tenant) == stored


async def test_jsonl_of_document_and_beir_lines(pg_url: str, tmp_root: Path, db: Database, tenant: str) -> None:
    path = tmp_root / f"{tenant}.jsonl"
    lines = [
        json.dumps({"_id": "4983", "title": "Microstructural development", "text": "Alterations of the brain."}),
        json.dumps(
            {"title": "Plain", "text": "A DocumentInput line.", "externalId": "plain-1", "metadata": {"year": 2001}}
        ),
        "{not json",
        json.dumps({"title": "No id", "text": "Gets its file and line as externalId."}),
        json.dumps({"_id": "77", "title": "", "text": ""}),
    ]
    path.write_text("\n".join(lines) + "\n")
    result = _ingest(pg_url, tmp_root, path, tenant)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _counts(result) == (5, 3, 0, 0, 2, 3)
    assert "INVALID_JSON" in result.stderr and "INVALID_DOCUMENT" in result.stderr
    assert set(await _documents(db, tenant)) == {"4983", "plain-1", f"{path.name}:4"}


async def test_ctrl_c_then_run_again_continues_and_stores_nothing_twice(
    pg_url: str, tmp_root: Path, db: Database, tenant: str
) -> None:
    path = tmp_root / f"{tenant}-big.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"title": f"Entry {i}", "text": f"Entry {i} of the interrupted run: {word(i)}."})
            for i in range(160)
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "ingest",
        str(path),
        "--tenant",
        tenant,
        cwd=REPO,
        env=worker_env(pg_url, tmp_root),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while len(await _documents(db, tenant)) < 12:
        assert process.returncode is None and time.monotonic() < deadline, "ingest ended before the interrupt"
        await asyncio.sleep(0.05)
    process.send_signal(signal.SIGINT)
    raw_out, raw_err = await asyncio.wait_for(process.communicate(), timeout=120)
    out, err = raw_out.decode(), raw_err.decode()
    assert process.returncode == 130, err[-3000:]
    assert "run the same command again to continue" in err
    stopped_at = len(await _documents(db, tenant))
    assert 12 <= stopped_at < 160
    again = _ingest(pg_url, tmp_root, path, tenant)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "continuing job" in again.stderr
    n, created, updated, unchanged, failed, _ = _counts(again)
    assert (n, created, updated, unchanged, failed) == (160, 160, 0, 0, 0)  # the one job, counted across both runs
    stored = await _documents(db, tenant)
    assert len(stored) == 160 and min(stored.values()) >= 1
    assert out.strip().splitlines()[-1].startswith("ingested 160 documents")
