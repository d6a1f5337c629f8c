"""`ragql serve` as a real process on the embedded PostgreSQL: SIGTERM (what Docker, systemd and
Kubernetes send) and SIGINT (Ctrl+C) both end the server within a grace period and stop the
PostgreSQL it started. Before the fix, SIGTERM left the postmaster running after the server exited."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 240.0
# Kubernetes gives the api pods 45 s (k8s/base/api-deployment.yaml); the server must be done well within it.
GRACE_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _postmaster_pid(pgdata: Path) -> int | None:
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return None
    first = pidfile.read_text().splitlines()[:1]
    return int(first[0]) if first and first[0].strip().isdigit() else None


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ragql serve exited during start-up ({proc.returncode}):\n{_tail(log)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"ragql serve did not answer /healthz in {STARTUP_TIMEOUT_S:.0f} s:\n{_tail(log)}")


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return not _alive(pid)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_the_embedded_postgres_on(sig: signal.Signals) -> None:
    root = Path(tempfile.mkdtemp(prefix="ragql-shutdown-"))
    runtime = root / "run"
    runtime.mkdir(mode=0o700)
    pgdata = root / "data" / "pgdata"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGQL_")}
    env.update(
        PYTHONPATH=str(ROOT),
        # pgserver keeps its lock under XDG_RUNTIME_DIR, read when it is imported.
        XDG_RUNTIME_DIR=str(runtime),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        RAGQL_ENV="development",
        RAGQL_HOST="127.0.0.1",
        RAGQL_PORT=str(port),
        RAGQL_DATA_DIR=str(root / "data"),
        RAGQL_LOAD_DEMO="false",
        RAGQL_LOG_LEVEL="warning",
    )
    log = root / "serve.log"
    postmaster: int | None = None
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(proc, port, log)
        postmaster = _postmaster_pid(pgdata)
        assert postmaster is not None and _alive(postmaster), "the embedded PostgreSQL should be running"

        proc.send_signal(sig)
        try:
            returncode = proc.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ragql serve did not exit within {GRACE_S:.0f} s of {sig.name}:\n{_tail(log)}")
        # `pg_ctl stop -w` has returned by the time the server exits; a little slack for the OS.
        assert _wait_gone(postmaster, 5.0), f"the embedded PostgreSQL (pid {postmaster}) outlived ragql serve"
        assert not (pgdata / "postmaster.pid").exists(), "PostgreSQL did not shut down cleanly"
        # A requested shutdown is a clean exit for SIGTERM; SIGINT keeps Python's KeyboardInterrupt
        # convention (uvicorn re-raises it): 130 from a shell, -2 from Popen.
        expected = {0} if sig is signal.SIGTERM else {0, -signal.SIGINT, 128 + signal.SIGINT}
        assert returncode in expected, f"exit status {returncode} after {sig.name}:\n{_tail(log)}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        leftover = _postmaster_pid(pgdata) or postmaster
        if leftover is not None and _alive(leftover):
            os.kill(leftover, signal.SIGINT)  # PostgreSQL's fast shutdown
            if not _wait_gone(leftover, 10.0):
                os.kill(leftover, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
