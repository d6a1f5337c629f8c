"""`make bench-streams`: how many concurrent `answerStream` subscriptions one server process holds.

Figures, not assertions. The real server runs as a subprocess on a temporary embedded store (loopback
only) with the default extractive generator, so its memory is measured alone. N websocket clients speak
graphql-transport-ws by hand; all of them are acknowledged before any subscribes, so every subscription
is open at the same time."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from api import embedded
from bench.stats import percentile

STREAM = (
    "subscription($q: String!) { answerStream(question: $q) { __typename ... on AnswerDelta { text } "
    "... on AnswerDone { tookMs firstTokenMs } ... on AnswerError { code message } } }"
)
TEMPLATES = [
    "Which film is about {topic}?",
    "Recommend a movie about {topic}.",
    "Is there a film where the story involves {topic}?",
    "What should I watch if I like stories about {topic}?",
    "Name a movie that deals with {topic}.",
]
TOPICS = [
    "time travel",
    "a heist",
    "a haunted house",
    "space survival",
    "a courtroom",
    "first love",
    "robots",
    "a road trip",
    "war",
    "a musician",
    "a serial killer",
    "a family reunion",
    "a boxing champion",
    "a shipwreck",
    "an alien invasion",
    "a con artist",
    "a small town secret",
    "a coming of age summer",
    "a journalist uncovering corruption",
    "a dystopian future",
    "a chef",
    "a prison escape",
    "a dog",
    "a wedding",
    "a zombie outbreak",
    "a chess prodigy",
    "a samurai",
    "a submarine",
    "artificial intelligence",
    "a mountain climb",
    "a bank robbery",
    "a spy",
    "a dancer",
    "a detective",
    "a plague",
    "a superhero",
    "a ghost",
    "a kidnapping",
    "an island",
    "a teacher",
    "a talking animal",
    "a dream within a dream",
    "a psychologist",
    "a king",
    "the mafia",
]
READY_TIMEOUT_S = 180.0
# The load phase; with start-up (<= 180 s), the baseline stream and shutdown the run stays under 10 minutes.
RUN_TIMEOUT_S = 330.0
CONNECT_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0
MIB = 1024 * 1024


@dataclass
class StreamResult:
    index: int
    connected: bool = False
    acked: bool = False
    subscribed_at: float | None = None
    sources_ms: float | None = None
    first_delta_ms: float | None = None
    done_ms: float | None = None
    server_first_token_ms: float | None = None
    server_took_ms: float | None = None
    events: list[str] = field(default_factory=list)
    completed: bool = False  # ended in AnswerDone
    failure: str | None = None


@dataclass
class OpenCounter:
    open: int = 0
    max_open: int = 0

    def enter(self) -> None:
        self.open += 1
        self.max_open = max(self.max_open, self.open)

    def leave(self) -> None:
        self.open -= 1


@dataclass
class RssSampler:
    pid: int
    interval_s: float = 0.2
    peak_kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = _proc_status_kib(self.pid, "VmRSS")
            if rss is not None:
                self.peak_kib = max(self.peak_kib, rss)
            self._stop.wait(self.interval_s)


def _cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of the process (all its threads), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _proc_status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _mib(kib: int | None) -> str:
    return f"{kib / 1024:.0f}" if kib is not None else "n/a"


def _ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "n/a"


def _summary(values: list[float]) -> str:
    if not values:
        return "n/a (no samples)"
    p50, p95 = percentile(values, 50), percentile(values, 95)
    return f"p50={p50:.0f} ms p95={p95:.0f} ms max={max(values):.0f} ms (n={len(values)})"


def _questions(n: int) -> list[str]:
    pairs = [t.format(topic=topic) for t in TEMPLATES for topic in TOPICS]
    # Beyond the template x topic grid a numbered suffix keeps every question distinct.
    return [pairs[i % len(pairs)] + ("" if i < len(pairs) else f" ({i // len(pairs) + 1})") for i in range(n)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start_server(root: Path, url: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        RAGQL_DATABASE_URL=url,
        RAGQL_DATA_DIR=str(root),
        RAGQL_PORT=str(port),
        RAGQL_HOST="127.0.0.1",
        RAGQL_LOG_LEVEL="warning",
        # One anonymous developer opens every stream: lift the per-caller socket cap and rates.
        RAGQL_MAX_WEBSOCKETS_PER_PRINCIPAL=str(10 * 1000),
        RAGQL_RATE_PER_IP=str(10**9),
        RAGQL_TENANT_QUOTA=str(10**9),
        HF_HUB_OFFLINE=env.get("HF_HUB_OFFLINE", "1"),
        TRANSFORMERS_OFFLINE=env.get("TRANSFORMERS_OFFLINE", "1"),
    )
    env.setdefault("XDG_RUNTIME_DIR", str(root / "run"))
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", "from api.cli import main; main()", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> float:
    started = time.monotonic()
    deadline = started + READY_TIMEOUT_S
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                print(f"bench streams server exited during start-up (code {proc.returncode}); log tail:")
                print(_tail(log_path))
                raise RuntimeError("the ragql server exited during start-up")
            try:
                if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    print("bench streams server not ready in time; log tail:")
    print(_tail(log_path))
    raise TimeoutError(f"the ragql server was not ready within {READY_TIMEOUT_S:.0f} s")


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


async def _recv_json(ws: ClientConnection, limit_s: float) -> dict[str, Any]:
    async with asyncio.timeout(limit_s):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message.get("type") == "ping":  # keep-alive from the server: answer and read on
                await ws.send(json.dumps({"type": "pong"}))
                continue
            if message.get("type") == "pong":
                continue
            return message


async def _one_stream(
    result: StreamResult,
    url: str,
    question: str,
    all_acked: asyncio.Barrier,
    counter: OpenCounter,
    deadline: float,
) -> None:
    subprotocols = [Subprotocol("graphql-transport-ws")]
    acked_barrier = False
    try:
        async with connect(
            url, subprotocols=subprotocols, open_timeout=CONNECT_TIMEOUT_S, max_queue=None, ping_interval=None
        ) as ws:
            result.connected = True
            await ws.send(json.dumps({"type": "connection_init"}))
            ack = await _recv_json(ws, CONNECT_TIMEOUT_S)
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"expected connection_ack, got {ack.get('type')!r}")
            result.acked = True
            acked_barrier = True
            await all_acked.wait()
            subscribe = {"id": "1", "type": "subscribe", "payload": {"query": STREAM, "variables": {"q": question}}}
            t0 = time.perf_counter()
            result.subscribed_at = t0
            await ws.send(json.dumps(subscribe))
            counter.enter()
            try:
                while True:
                    message = await _recv_json(ws, max(deadline - time.monotonic(), 0.1))
                    kind = message.get("type")
                    if kind == "next":
                        payload = message.get("payload") or {}
                        if payload.get("errors"):
                            result.events.append("GraphQLError")
                            result.failure = f"graphql errors: {payload['errors']}"[:300]
                            continue
                        event = (payload.get("data") or {}).get("answerStream") or {}
                        typename = str(event.get("__typename"))
                        result.events.append(typename)
                        elapsed = (time.perf_counter() - t0) * 1000
                        if typename == "AnswerSources" and result.sources_ms is None:
                            result.sources_ms = elapsed
                        elif typename == "AnswerDelta" and result.first_delta_ms is None:
                            result.first_delta_ms = elapsed
                        elif typename == "AnswerDone":
                            result.done_ms = elapsed
                            result.server_took_ms = event.get("tookMs")
                            result.server_first_token_ms = event.get("firstTokenMs")
                            result.completed = True
                        elif typename == "AnswerError":
                            result.failure = f"AnswerError {event.get('code')}: {event.get('message')}"[:300]
                    elif kind == "complete":
                        break
                    elif kind == "error":
                        result.events.append("error")
                        result.failure = f"protocol error: {message.get('payload')}"[:300]
                        break
                    else:
                        result.failure = f"unexpected message type {kind!r}"
                        break
            finally:
                counter.leave()
    except Exception as exc:  # a benchmark reports every failure rather than stopping
        reason = "timeout" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"[:300]
        result.failure = result.failure or reason
        if not acked_barrier:
            # Never leave the others waiting for a connection that failed: it counts as arrived.
            await all_acked.wait()


async def _baseline(port: int) -> StreamResult:
    """One subscription on the idle server (also warms the model): the latency without contention."""
    result = StreamResult(index=-1)
    question = "Which film follows a lighthouse keeper through a long winter?"  # not among the load questions
    await _one_stream(
        result, f"ws://127.0.0.1:{port}/graphql", question, asyncio.Barrier(1), OpenCounter(), time.monotonic() + 60
    )
    return result


async def _run_load(port: int, concurrency: int) -> tuple[list[StreamResult], int, float, float]:
    url = f"ws://127.0.0.1:{port}/graphql"
    questions = _questions(concurrency)
    results = [StreamResult(index=i) for i in range(concurrency)]
    barrier = asyncio.Barrier(concurrency)
    counter = OpenCounter()
    started = time.monotonic()
    deadline = started + RUN_TIMEOUT_S
    tasks = [
        asyncio.create_task(_one_stream(results[i], url, questions[i], barrier, counter, deadline))
        for i in range(concurrency)
    ]
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S + 15):
            await asyncio.gather(*tasks)
    except TimeoutError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            r.failure = r.failure or "run timeout"
    wall = time.monotonic() - started
    subscribed = [r.subscribed_at for r in results if r.subscribed_at is not None]
    spread = (max(subscribed) - min(subscribed)) * 1000 if subscribed else 0.0
    return results, counter.max_open, wall, spread


def _report(
    concurrency: int, results: list[StreamResult], max_open: int, wall: float, spread_ms: float, log_path: Path
) -> None:
    completed = [r for r in results if r.completed]
    failed = [r for r in results if not r.completed or r.failure]
    acked = sum(r.acked for r in results)
    print(
        f"bench streams concurrency={concurrency} completed={len(completed)} errors={len(failed)} "
        f"max_open={max_open} acked={acked} wall={wall:.1f}s (subscribes sent within {spread_ms:.0f} ms)"
    )
    sources = [r.sources_ms for r in completed if r.sources_ms is not None]
    print(f"bench streams sources (client, under load): {_summary(sources)}")
    deltas = [r.first_delta_ms for r in completed if r.first_delta_ms is not None]
    dones = [r.done_ms for r in completed if r.done_ms is not None]
    print(f"bench streams first delta (client, under load): {_summary(deltas)}")
    print(f"bench streams done (client, under load): {_summary(dones)}")
    first = [float(r.server_first_token_ms) for r in completed if r.server_first_token_ms is not None]
    took = [float(r.server_took_ms) for r in completed if r.server_took_ms is not None]
    print(f"bench streams server firstTokenMs (under load): {_summary(first)}")
    print(f"bench streams server tookMs (under load): {_summary(took)}")
    if completed:
        events = [len(r.events) for r in completed]
        kinds = sorted({k for r in completed for k in r.events})
        print(
            f"bench streams events per stream: p50={percentile([float(e) for e in events], 50):.0f} "
            f"min={min(events)} max={max(events)} types={','.join(kinds)}"
        )
    if failed:
        reasons: dict[str, int] = {}
        for r in failed:
            key = (r.failure or "ended without AnswerDone")[:160]
            reasons[key] = reasons.get(key, 0) + 1
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])[:8]:
            print(f"bench streams failure x{count}: {reason}")
        print("bench streams server log tail:")
        print(_tail(log_path))


def run_stream_bench(concurrency: int = 200) -> None:
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    for noisy in ("httpx", "pgserver"):  # one line per readiness poll and per pg_ctl call otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with embedded.temporary("ragql-bench-streams-") as (root, url):
        _measure(concurrency, root, url)


def _measure(concurrency: int, root: Path, url: str) -> None:
    log_path = root / "server.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = _free_port()
        proc = _start_server(root, url, port, log_path)
        ready_s = _wait_ready(proc, port, log_path)
        before = _proc_status_kib(proc.pid, "VmRSS")
        print(f"bench streams server ready in {ready_s:.1f}s (pid {proc.pid}, port {port}, demo films loaded)")
        base = asyncio.run(_baseline(port))
        print(
            f"bench streams baseline (1 stream, idle server): sources={_ms(base.sources_ms)} "
            f"first delta={_ms(base.first_delta_ms)} done={_ms(base.done_ms)} "
            f"server firstTokenMs={_ms(base.server_first_token_ms)} completed={base.completed}"
            + (f" failure={base.failure}" if base.failure else "")
        )
        sampler = RssSampler(proc.pid)
        cpu_before = _cpu_seconds(proc.pid)
        sampler.start()
        try:
            results, max_open, wall, spread = asyncio.run(_run_load(port, concurrency))
        finally:
            sampler.stop()
        cpu_after = _cpu_seconds(proc.pid)
        hwm = _proc_status_kib(proc.pid, "VmHWM")
        after = _proc_status_kib(proc.pid, "VmRSS")
        _report(concurrency, results, max_open, wall, spread, log_path)
        print(
            f"bench streams server RSS: before={_mib(before)} MiB peak_during_load={_mib(sampler.peak_kib or None)} "
            f"MiB after={_mib(after)} MiB VmHWM={_mib(hwm)} MiB (VmHWM is the lifetime high-water mark)"
        )
        if cpu_before is not None and cpu_after is not None:
            cpu = cpu_after - cpu_before
            print(
                f"bench streams server CPU during load: {cpu:.1f}s over {wall:.1f}s wall = {cpu / wall:.2f} cores "
                f"(machine has {os.cpu_count()}); {len(results) / wall:.1f} answers/s"
            )
        if proc.poll() is not None:
            print(f"bench streams server exited during the run (code {proc.returncode}); log tail:")
            print(_tail(log_path))
    finally:
        if proc is not None:
            _stop_server(proc)
