"""The load generator of `make bench`: a separate process, so its CPU is its own and is reported.

`python -m bench.loadgen SPEC.json OUT.json`. The spec names a kind of load, the URL, the requests
(cycled, or each sent once) and the concurrency; the run is bounded by `duration_s` and
`max_requests`, whichever comes first. It writes every latency (ms), the errors (with the first
few reasons), the wall time, this process's CPU seconds and which generator ran. Lean on purpose:
one httpx client with a connection per worker, or one websocket per worker, speaking
graphql-transport-ws by hand.

A cycled HTTP load goes through wrk instead when it is installed (bench/wrk_load.py): at the
cached search's rates httpx took most of a core of the two the server has. The spec's
`generator` says which: "auto" (wrk if installed and the load suits it, else httpx), "wrk" (an
error without it) or "httpx". wrk's CPU is reported the same way, as this process's child."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench import wrk_load

WS_PROTOCOL = [Subprotocol("graphql-transport-ws")]
STEP_TIMEOUT_S = 60.0


@dataclass
class Outcome:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        self.errors += 1
        key = reason[:200]
        self.reasons[key] = self.reasons.get(key, 0) + 1


class Feed:
    """Hands out request indexes: cycled (repeated queries) or each once (distinct queries)."""

    def __init__(self, n: int, *, cycle: bool, max_requests: int, deadline: float) -> None:
        self.n, self.cycle, self.max_requests, self.deadline = n, cycle, max_requests, deadline
        self.sent = 0

    def next(self) -> int | None:
        if self.sent >= self.max_requests or time.monotonic() >= self.deadline:
            return None
        if not self.cycle and self.sent >= self.n:
            return None
        i = self.sent % self.n
        self.sent += 1
        return i


def _graphql_failure(status: int, body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status}: {body[:160]!r}"
    doc = json.loads(body)
    if doc.get("errors"):
        return f"graphql: {json.dumps(doc['errors'])[:160]}"
    data = doc.get("data")
    if isinstance(data, dict):  # mutations report errors in their payload
        for value in data.values():
            if isinstance(value, dict) and value.get("errors"):
                return f"payload: {json.dumps(value['errors'])[:160]}"
    return None


async def _http_worker(spec: dict[str, Any], feed: Feed, out: Outcome, client: httpx.AsyncClient) -> None:
    requests: list[dict[str, Any]] = spec["requests"]
    headers_list: list[dict[str, str]] | None = spec.get("headers_list")
    while (i := feed.next()) is not None:
        headers = headers_list[i % len(headers_list)] if headers_list else spec.get("headers", {})
        body = json.dumps(requests[i]).encode()
        t0 = time.perf_counter()
        try:
            resp = await client.post(spec["url"], content=body, headers={**headers, "content-type": "application/json"})
            elapsed = (time.perf_counter() - t0) * 1000
            failure = _graphql_failure(resp.status_code, resp.content) if spec.get("check_graphql", True) else None
            if failure is None and resp.status_code != 200:
                failure = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            elapsed, failure = 0.0, f"{type(exc).__name__}: {exc}"
        if failure:
            out.fail(failure)
        else:
            out.latencies_ms.append(elapsed)


async def _recv(ws: ClientConnection, limit_s: float = STEP_TIMEOUT_S) -> dict[str, Any]:
    async with asyncio.timeout(limit_s):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong"}))
                continue
            if message.get("type") != "pong":
                return message


async def _ws_open(spec: dict[str, Any]) -> ClientConnection:
    ws = await connect(
        spec["url"],
        subprotocols=WS_PROTOCOL,
        open_timeout=STEP_TIMEOUT_S,
        max_queue=None,
        ping_interval=None,
        additional_headers=spec.get("headers", {}),
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": spec.get("init_payload", {})}))
    ack = await _recv(ws)
    if ack.get("type") != "connection_ack":
        await ws.close()
        raise RuntimeError(f"expected connection_ack, got {json.dumps(ack)[:160]}")
    return ws


async def _one_answer(
    ws: ClientConnection, op_id: str, payload: dict[str, Any], limit_s: float = STEP_TIMEOUT_S
) -> tuple[float | None, str | None]:
    """Subscribe; the latency is the time to the first AnswerDelta. Reads on to `complete`."""
    t0 = time.perf_counter()
    await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))
    first: float | None = None
    failure: str | None = None
    while True:
        message = await _recv(ws, limit_s)
        kind = message.get("type")
        if kind == "next":
            body = message.get("payload") or {}
            if body.get("errors"):
                failure = failure or f"graphql: {json.dumps(body['errors'])[:160]}"
                continue
            event = (body.get("data") or {}).get("answerStream") or {}
            name = event.get("__typename")
            if name == "AnswerDelta" and first is None:
                first = (time.perf_counter() - t0) * 1000
            elif name == "AnswerError":
                failure = failure or f"AnswerError {event.get('code')}"
        elif kind == "complete":
            return (first, failure) if first is not None or failure else (None, "completed without a delta")
        else:
            return None, f"unexpected {json.dumps(message)[:160]}"


async def _ws_worker(spec: dict[str, Any], feed: Feed, out: Outcome, worker: int) -> None:
    try:
        ws = await _ws_open(spec)
    except Exception as exc:  # every failure is counted, never raised: a bench reports
        out.fail(f"connect: {type(exc).__name__}: {exc}")
        return
    try:
        n = 0
        while (i := feed.next()) is not None:
            n += 1
            try:
                limit = max(STEP_TIMEOUT_S, float(spec.get("duration_s", 0)) * 2)
                first, failure = await _one_answer(ws, f"{worker}-{n}", spec["requests"][i], limit)
            except Exception as exc:
                out.fail(f"{type(exc).__name__}: {exc}")
                return
            if failure or first is None:
                out.fail(failure or "no delta")
            else:
                out.latencies_ms.append(first)
    finally:
        await ws.close()


async def _held_worker(spec: dict[str, Any], out: Outcome, worker: int, all_open: asyncio.Barrier) -> None:
    """subscriptions_held: every worker connects, waits until all have, then subscribes once."""
    ws: ClientConnection | None = None
    try:
        ws = await _ws_open(spec)
    except Exception as exc:
        out.fail(f"connect: {type(exc).__name__}: {exc}")
    await all_open.wait()
    if ws is None:
        return
    try:
        requests = spec["requests"]
        # Held streams queue behind each other: wait as long as the run may last, not one step.
        limit = float(spec.get("duration_s", STEP_TIMEOUT_S))
        first, failure = await _one_answer(ws, str(worker), requests[worker % len(requests)], limit)
        if failure or first is None:
            out.fail(failure or "no delta")
        else:
            out.latencies_ms.append(first)
    except Exception as exc:
        out.fail(f"{type(exc).__name__}: {exc}")
    finally:
        await ws.close()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    conc = int(spec["concurrency"])
    out = Outcome()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime  # start-up and imports are not the load
    duration = float(spec.get("duration_s", 10.0))
    feed = Feed(
        len(spec["requests"]),
        cycle=bool(spec.get("cycle", True)),
        max_requests=int(spec.get("max_requests", 10**9)),
        deadline=time.monotonic() + duration,
    )
    started = time.perf_counter()
    kind = spec["kind"]
    if kind == "http":
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(timeout=STEP_TIMEOUT_S, limits=limits) as client:
            # One request per connection first, not measured: connection set-up is not the query.
            # It takes the feed's first requests, so a feed of distinct queries stays distinct.
            warm = Feed(feed.n, cycle=feed.cycle, max_requests=conc, deadline=time.monotonic() + duration)
            await asyncio.gather(*(_http_worker(spec, warm, Outcome(), client) for _ in range(conc)))
            feed.sent, feed.max_requests = warm.sent, feed.max_requests + warm.sent
            feed.deadline = time.monotonic() + duration
            started = time.perf_counter()
            await asyncio.gather(*(_http_worker(spec, feed, out, client) for _ in range(conc)))
    elif kind == "ws_answer":
        await asyncio.gather(*(_ws_worker(spec, feed, out, w) for w in range(conc)))
    elif kind == "ws_held":
        barrier = asyncio.Barrier(conc)
        await asyncio.gather(*(_held_worker(spec, out, w, barrier) for w in range(conc)))
    else:
        raise ValueError(f"unknown load kind {kind!r}")
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "latencies_ms": out.latencies_ms,
        "errors": out.errors,
        "reasons": out.reasons,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime - cpu_before,
    }


def generator(spec: dict[str, Any]) -> str:
    """The load generator this spec runs on: "wrk" or "httpx"."""
    wanted = spec.get("generator", "auto")
    if wanted not in ("auto", "wrk", "httpx"):
        raise ValueError(f"unknown load generator {wanted!r}")
    if wanted == "httpx" or spec["kind"] != "http" or not wrk_load.suits(spec):
        return "httpx"
    if wrk_load.available():
        return "wrk"
    if wanted == "wrk":
        raise RuntimeError("generator wrk was asked for, and wrk is not on PATH (apt-get install wrk)")
    return "httpx"


def main() -> None:
    spec = json.loads(open(sys.argv[1], encoding="utf-8").read())
    if generator(spec) == "wrk":
        result = wrk_load.run(spec)
    else:
        result = {**asyncio.run(run(spec)), "generator": "httpx" if spec["kind"] == "http" else "websockets"}
    with open(sys.argv[2], "w", encoding="utf-8") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
