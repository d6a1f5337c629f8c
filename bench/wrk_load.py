"""bench/loadgen.py's HTTP load through wrk, when wrk is installed (Debian: `apt-get install wrk`).

At hundreds of requests per second the httpx client takes a large share of a core itself, on the
same two cores as the server it measures; wrk (C, epoll) spends a small fraction of that. It runs
only cycled loads (`cycle` true: repeated queries), the ones that go fast enough for the client
to matter; a feed of distinct queries, each sent once, stays with httpx.

The requests are rendered here as whole HTTP/1.1 requests and cycled by bench/wrk_load.lua, which
also checks each 200 body for GraphQL `errors`. The result has the shape of bench/loadgen.py's
(latencies in ms, errors and reasons, wall and CPU seconds), plus `ok`: wrk times every response,
failed ones too, so its latencies include those and `ok` counts the successes."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SCRIPT = Path(__file__).with_name("wrk_load.lua")
TIMEOUT_S = 60


def available() -> bool:
    return shutil.which("wrk") is not None


def suits(spec: dict[str, Any]) -> bool:
    """wrk can cycle a list for a duration; it cannot send each request once and stop."""
    return spec["kind"] == "http" and bool(spec.get("cycle", True)) and "max_requests" not in spec


def render(spec: dict[str, Any]) -> list[bytes]:
    """Every request of the spec as the bytes wrk sends (the same headers httpx would)."""
    parts = urlsplit(spec["url"])
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers_list: list[dict[str, str]] | None = spec.get("headers_list")
    out = []
    for i, request in enumerate(spec["requests"]):
        headers = headers_list[i % len(headers_list)] if headers_list else spec.get("headers", {})
        body = json.dumps(request).encode()
        head = [f"POST {path} HTTP/1.1", f"host: {parts.netloc}", "content-type: application/json"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"content-length: {len(body)}")
        out.append(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return out


def run(spec: dict[str, Any]) -> dict[str, Any]:
    conc = int(spec["concurrency"])
    threads = 1 if conc < 8 else 2
    duration = max(1, round(float(spec.get("duration_s", 10.0))))
    with tempfile.TemporaryDirectory(prefix="ragql-wrk-") as tmp:
        requests, out = Path(tmp) / "requests", Path(tmp) / "out.json"
        with requests.open("wb") as fh:
            for one in render(spec):
                fh.write(f"{len(one)}\n".encode() + one)
        check = "1" if spec.get("check_graphql", True) else "0"
        cmd = ["wrk", "-t", str(threads), "-c", str(conc), "-d", f"{duration}s", "--timeout", f"{TIMEOUT_S}s"]
        cmd += ["-s", str(SCRIPT), spec["url"], "--", str(requests), check, str(threads)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            cmd,
            env={**os.environ, "RAGQL_WRK_OUT": str(out)},
            capture_output=True,
            text=True,
            timeout=duration + 2 * TIMEOUT_S,
            check=False,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:] or done.stdout[-2000:]}")
        raw: dict[str, Any] = json.loads(out.read_text())
    return summarise(raw, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime))


def summarise(raw: dict[str, Any], cpu_s: float) -> dict[str, Any]:
    """wrk_load.lua's output as bench/loadgen.py's result."""
    latencies = [value / 1000 for value, count in raw["latency_us"] for _ in range(count)]
    # Non-200 responses are counted by the script (wrk's own `status` counts only >= 400).
    sockets = {k: int(raw[k]) for k in ("connect", "read", "write", "timeout") if raw[k]}
    reasons: dict[str, int] = {}
    for reason in raw["reasons"]:
        reasons[reason[:200]] = reasons.get(reason[:200], 0) + 1
    for kind, n in sockets.items():
        reasons[f"socket {kind} errors"] = n
    errors = int(raw["failed"]) + sum(sockets.values())
    return {
        "latencies_ms": latencies,
        "ok": max(0, int(raw["requests"]) - int(raw["failed"])),
        "errors": errors,
        "reasons": reasons,
        "wall_s": raw["duration_us"] / 1e6,
        "cpu_s": cpu_s,
        "generator": "wrk",
    }
