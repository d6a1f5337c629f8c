"""What the browser tests run against: a real `ragql serve` process on a free 127.0.0.1 port with
a temporary embedded data dir (the demo catalogue loads as on a fresh machine), a static file
server for a page on another origin, and a rule that blocks every request not to 127.0.0.1."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx

# Debian's Chromium; another build can be named with RAGQL_TEST_CHROMIUM.
CHROMIUM = Path(os.environ.get("RAGQL_TEST_CHROMIUM", "/usr/bin/chromium"))
READY_TIMEOUT_S = 180.0
ROOT = Path(__file__).resolve().parents[2]


def missing_browser() -> str | None:
    """Why the browser tests can't run here, or None."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright; it is in the dev extras)"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium; `make test` does it as root)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def only_loopback(url: str) -> bool:
    return urlsplit(url).hostname == "127.0.0.1"


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def ragql_server(extra_env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:<port>) once /readyz answers 200. `extra_env` adds
    settings (RAGQL_*), e.g. an LLM at the fake providers' address."""
    root = Path(tempfile.mkdtemp(prefix="ragql-browser-"))
    port = free_port()
    log_path = root / "server.log"
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        RAGQL_DATA_DIR=str(root / "data"),
        RAGQL_HOST="127.0.0.1",
        RAGQL_PORT=str(port),
        RAGQL_LOG_LEVEL="warning",
        XDG_RUNTIME_DIR=str(root / "run"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    for name in ("RAGQL_DATABASE_URL", "RAGQL_REDIS_URL", "RAGQL_ENV", "RAGQL_CORS_ORIGINS", "RAGQL_CORS_ORIGIN_REGEX"):
        env.pop(name, None)
    env.update(extra_env or {})
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url, log_path)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ragql serve exited with {proc.returncode} during start-up:\n{_tail(log_path)}")
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise TimeoutError(f"ragql serve was not ready within {READY_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def static_server(directory: Path) -> Iterator[str]:
    """A plain file server on another port: another origin, as a frontend's dev server would be."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="static-origin", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
