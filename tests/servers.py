"""A real uvicorn server on 127.0.0.1 in a background thread, for websocket clients. It runs the
app's lifespan on its own event loop, as production does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI


@contextmanager
def serve_in_thread(
    app: FastAPI, *, startup_timeout: float = 120.0, options: dict[str, Any] | None = None
) -> Iterator[str]:
    """Yields "127.0.0.1:<port>" once the server accepts connections. `options`: uvicorn's
    keyword arguments (api.serving.uvicorn_options, as `ragql serve` passes them)."""
    values: dict[str, Any] = {"ws": "websockets-sansio", **(options or {})}
    values.update(host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    config = uvicorn.Config(app, **values)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test server exited during start-up; see the log above")
        if time.monotonic() > deadline:
            raise TimeoutError("the test server did not start in time")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
