"""schema.graphql is the published contract: it must equal what the code serves."""

from __future__ import annotations

from pathlib import Path

from schema.root import build_schema


def test_committed_sdl_matches_the_code() -> None:
    committed = (Path(__file__).resolve().parent.parent / "schema.graphql").read_text()
    assert committed.strip() == build_schema().as_str().strip(), "run: ragql schema > schema.graphql"
