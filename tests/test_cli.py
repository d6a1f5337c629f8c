"""The `ragql` command through typer's CliRunner, against the session's real embedded PostgreSQL
(the demo films) and the real local model: what each command prints, and that the errors a user
can fix come out as one line naming the fix, with exit code 2."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import re
import socket
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner
from uvicorn.importer import import_from_string

from api.auth.tokens import JwtVerifier
from api.bootstrap import jwt_config
from api.cli import app
from api.cli.access import Role
from api.cli.core import CliState
from api.serving import EnvironmentProtocol, uvicorn_options
from api.settings import Settings
from domain.auth.apikeys import ROLES
from domain.demo.loader import CATALOGUE
from domain.providers.embedding import LocalEmbedder
from schema.root import build_schema

# Wide enough that rich never folds a title or a message across lines.
runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})
FILMS = {json.loads(line)["title"]: json.loads(line)["metadata"] for line in CATALOGUE.read_text().splitlines()}


@pytest.fixture
def cli_state(pg_url: str, tmp_root: Path, embedder: LocalEmbedder) -> CliState:
    settings = Settings(database_url=pg_url, data_dir=tmp_root, load_demo=True)
    return CliState(settings=settings, embedder=embedder)


def _titles(output: str) -> list[str]:
    """The titles column of the search table, in rank order (rows start with │ <rank> │ <title> │)."""
    return [m[2].strip() for m in re.finditer(r"^│\s+(\d+)\s+│\s+(.+?)\s+│", output, re.M)]


def test_search_prints_hits_with_the_score_breakdown(cli_state: CliState) -> None:
    result = runner.invoke(app, ["search", "time travel paradox", "-n", "5"], obj=cli_state)
    assert result.exit_code == 0, result.output
    for column in ("score", "dense", "keyword", "fused", "snippet"):
        assert column in result.output
    titles = _titles(result.output)
    assert len(titles) == 5 and set(titles) <= set(FILMS)
    assert "Primer" in titles
    # A hybrid hit found by both retrievers shows both scores with their ranks: 0.512 (#1)
    assert re.search(r"\d\.\d{3} \(#\d+\)\s+│\s+\d\.\d{3} \(#\d+\)", result.output)


def test_search_filter_keeps_only_matching_documents(cli_state: CliState) -> None:
    result = runner.invoke(
        app, ["search", "a story about family", "--where", "genre=Comedy", "-w", "year>=2000"], obj=cli_state
    )
    assert result.exit_code == 0, result.output
    titles = _titles(result.output)
    assert titles, result.output
    for title in titles:
        assert FILMS[title]["genre"] == "Comedy" and FILMS[title]["year"] >= 2000, title


def test_keyword_mode_has_no_dense_scores(cli_state: CliState) -> None:
    result = runner.invoke(app, ["search", "heist", "--mode", "keyword", "-n", "3"], obj=cli_state)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if re.match(r"^│\s+\d+\s+│", line)]
    assert rows
    for row in rows:
        dense = row.split("│")[4].strip()
        assert dense == "–", row


def test_a_malformed_filter_names_the_syntax(cli_state: CliState) -> None:
    result = runner.invoke(app, ["search", "heist", "--where", "genre"], obj=cli_state)
    assert result.exit_code == 2
    assert "--where 'genre' is not FIELD OP VALUE" in result.output


def test_an_invalid_filter_value_is_the_api_error_code(cli_state: CliState) -> None:
    result = runner.invoke(app, ["search", "heist", "--where", "year>=soon"], obj=cli_state)
    assert result.exit_code == 2, result.output
    assert "INVALID_FILTER_VALUE" in result.output and "year" in result.output


def test_ask_streams_an_answer_and_lists_its_citations(cli_state: CliState) -> None:
    result = runner.invoke(app, ["ask", "Which film is about a time machine built in a garage?"], obj=cli_state)
    assert result.exit_code == 0, result.output
    answer, _, rest = result.output.partition("sources cited")
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer)}
    assert cited, result.output
    listed = {int(n) for n in re.findall(r"^│\s+\[(\d+)\]", rest, re.M)}
    assert listed == cited
    assert "Primer" in rest
    assert "extractive generator" in result.output


def test_migrate_and_reindex_check_on_the_real_database(cli_state: CliState) -> None:
    migrated = runner.invoke(app, ["migrate"], obj=cli_state)
    assert migrated.exit_code == 0, migrated.output
    assert "migrations applied" in migrated.output
    checked = runner.invoke(app, ["reindex", "--check"], obj=cli_state)
    assert checked.exit_code == 0, checked.output
    assert re.search(r"keyword backend bm25: healthy=True \(probed \d+ chunks\)", checked.output)


def test_rebuild_profiles_reports_per_tenant(cli_state: CliState) -> None:
    result = runner.invoke(app, ["rebuild-profiles", "--tenant", "default"], obj=cli_state)
    assert result.exit_code == 0, result.output
    assert re.search(r"tenant default: \d+ profiles, \d+ co-engagement pairs rebuilt", result.output)


def test_dev_token_verifies_with_the_configured_secret(cli_state: CliState) -> None:
    result = runner.invoke(app, ["dev-token", "--tenant", "acme", "--role", "admin", "--role", "reader"], obj=cli_state)
    assert result.exit_code == 0, result.output
    token = result.stdout.splitlines()[0]
    assert cli_state.settings is not None
    claims = asyncio.run(JwtVerifier(jwt_config(cli_state.settings)).verify(token))
    assert claims.tenant == "acme" and claims.roles == ["reader", "admin"]


def test_dev_token_refuses_in_production(tmp_root: Path) -> None:
    production = Settings(env="production", jwt_secret="x" * 40, database_url="postgresql://h/db", data_dir=tmp_root)
    result = runner.invoke(app, ["dev-token"], obj=CliState(settings=production))
    assert result.exit_code == 2
    assert "dev-token refuses to mint tokens in production" in result.output


def test_role_choices_are_the_domain_roles() -> None:
    assert tuple(r.value for r in Role) == ROLES


def test_schema_prints_the_sdl() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert result.stdout.strip() == build_schema().as_str().strip()


def test_a_bad_setting_names_the_variable(tmp_root: Path) -> None:
    result = runner.invoke(app, ["migrate"], obj=CliState(overrides={"env": "production", "data_dir": tmp_root}))
    assert result.exit_code == 2
    assert "invalid configuration" in result.output and "RAGQL_JWT_SECRET" in result.output


def test_an_unreachable_database_names_the_fix(tmp_root: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        url = f"postgresql://ragql:secret-pw@127.0.0.1:{port}/ragql"
        result = runner.invoke(app, ["migrate"], obj=CliState(settings=Settings(database_url=url, data_dir=tmp_root)))
    assert result.exit_code == 2, result.output
    assert "cannot use RAGQL_DATABASE_URL: ConnectionRefusedError" in result.output
    assert "unset it to use the embedded PostgreSQL" in result.output
    assert "secret-pw" not in result.output


PG = "postgresql://ragql@127.0.0.1:5999/ragql"
REDIS = "redis://127.0.0.1:6999/0"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, 1),  # the embedded database belongs to one process
        ({"database_url": PG}, 1),  # no Redis: limits, caches and revocations would be per process
        ({"database_url": PG, "redis_url": REDIS}, len(os.sched_getaffinity(0))),
        ({"database_url": PG, "redis_url": REDIS, "metrics_port": 9100}, 1),  # one port, one process
        ({"database_url": PG, "redis_url": REDIS, "metrics_token": "t" * 32}, 1),  # a scrape sees one worker
        ({"database_url": PG, "redis_url": REDIS, "workers": 3}, 3),
        ({"workers": 1, "database_url": PG, "redis_url": REDIS}, 1),
    ],
)
def test_serve_runs_one_worker_per_cpu_where_the_processes_can_agree(
    tmp_root: Path, overrides: dict[str, object], expected: int
) -> None:
    assert Settings(data_dir=tmp_root, **overrides).serve_workers == expected  # type: ignore[arg-type]


def test_several_workers_get_a_config_uvicorn_can_hand_to_its_worker_processes(tmp_root: Path) -> None:
    # uvicorn pickles its config to start each worker; the header-timeout protocol used to be a
    # class made at run time, which does not pickle, so RAGQL_WORKERS=2 failed at start.
    settings = Settings(data_dir=tmp_root, database_url=PG, workers=2)
    config = uvicorn.Config("api.app:create_app", factory=True, workers=2, **uvicorn_options(settings, workers=2))
    revived = pickle.loads(pickle.dumps(config))
    assert import_from_string(revived.http) is EnvironmentProtocol  # as uvicorn's Config.load does


def test_serve_refuses_several_workers_on_the_embedded_database(tmp_root: Path) -> None:
    # Several workers would each start the embedded PostgreSQL: refused before anything starts.
    settings = Settings(workers=2, data_dir=tmp_root)
    result = runner.invoke(app, ["serve"], obj=CliState(settings=settings))
    assert result.exit_code == 2
    assert "RAGQL_WORKERS > 1 needs RAGQL_DATABASE_URL" in result.output
