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


@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests_and_closes_websockets_with_1001() -> None:
    """A real `ragql serve`: SIGTERM while an ingest is running and a websocket is open. The ingest
    still answers 200 with every document stored, the websocket gets close code 1001, and the
    process exits within its grace period (RAGQL_SHUTDOWN_GRACE_S)."""
    import asyncio
    import json
    import threading

    import websockets
    from websockets.typing import Subprotocol

    root = Path(tempfile.mkdtemp(prefix="ragql-drain-"))
    runtime = root / "run"
    runtime.mkdir(mode=0o700)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGQL_")}
    env.update(
        PYTHONPATH=str(ROOT),
        XDG_RUNTIME_DIR=str(runtime),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        RAGQL_ENV="development",
        RAGQL_HOST="127.0.0.1",
        RAGQL_PORT=str(port),
        RAGQL_DATA_DIR=str(root / "data"),
        RAGQL_LOAD_DEMO="false",
        RAGQL_SHUTDOWN_GRACE_S="20",
    )
    log = root / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    docs = [
        {"title": f"Drain {i}", "text": " ".join(f"word{i}x{j} harbour lagoon film" for j in range(120))}
        for i in range(12)
    ]
    ingest = "mutation($d: [DocumentInput!]!) { ingestDocuments(input: {documents: $d}) { documents { title } } }"
    outcome: dict[str, object] = {}

    def run_ingest() -> None:
        reply = httpx.post(
            f"http://127.0.0.1:{port}/graphql", json={"query": ingest, "variables": {"d": docs}}, timeout=60
        )
        outcome["status"] = reply.status_code
        outcome["stored"] = len(reply.json()["data"]["ingestDocuments"]["documents"])

    async def socket_close_code() -> int | None:
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")]
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            worker = threading.Thread(target=run_ingest)
            worker.start()
            await asyncio.sleep(0.5)  # the ingest is embedding now
            proc.send_signal(signal.SIGTERM)
            outcome["signalled"] = time.monotonic()
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except websockets.ConnectionClosed as exc:
                worker.join(timeout=60)
                return exc.rcvd.code if exc.rcvd else None
        return None

    try:
        _wait_healthy(proc, port, log)
        code = asyncio.run(socket_close_code())
        signalled = float(outcome.pop("signalled"))  # type: ignore[arg-type]
        assert code == 1001, f"websocket close code {code}:\n{_tail(log)}"
        assert outcome == {"status": 200, "stored": len(docs)}, f"{outcome}:\n{_tail(log)}"
        proc.wait(timeout=GRACE_S)
        # RAGQL_SHUTDOWN_GRACE_S=20, plus stopping the embedded PostgreSQL.
        assert time.monotonic() - signalled < GRACE_S
        assert proc.returncode == 0, _tail(log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        pgdata = root / "data" / "pgdata"
        leftover = _postmaster_pid(pgdata)
        if leftover is not None and _alive(leftover):
            os.kill(leftover, signal.SIGINT)
            _wait_gone(leftover, 10.0)
        shutil.rmtree(root, ignore_errors=True)
