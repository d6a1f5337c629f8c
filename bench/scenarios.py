"""The scenarios and ratios of `make bench`, in the order they run (see bench/harness.py).

The uncached loads (`search_hybrid_uncached`, `search_long_query`) run first, on a server of their
own with every cache off: results (RAGQL_SEARCH_CACHE_TTL_S=0) and query vectors
(RAGQL_EMBEDDING_CACHE_TTL_S=0, which also empties the encoder's in-process memory of them). Every
request is then encoded and searched afresh however often its text comes round, so these loads
cycle their pools through wrk like the others, instead of feeding each text once through httpx,
whose own CPU (a fifth of a core at conc 16) was taken from the server it measured. The other
server's pools are disjoint slices of SciFact's query texts, so the peer's "fresh" queries are new
to its caches. Each load is bounded by a duration."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import INGEST_TENANT, RECS, ROOT, STREAM, USERS, Bench, Server, search_body
from bench.stats import percentile
from bench.streams import _proc_status_kib

LANCE_DEPS = ROOT / ".bench-deps"
ROUNDS = 3
PEER_QUERIES = 100
# The cached scenario's server processes unless --workers says otherwise.
CACHED_WORKERS = 1
# The scenario groups served by the first server (result cache off); `cached` has its own, and
# so do the uncached loads of `search` and `long` (every cache off).
FIRST_SERVER_GROUPS = ("search", "recs", "answers", "overhead", "floor", "peer", "ingest", "held")
NO_CACHES = {"RAGQL_SEARCH_CACHE_TTL_S": "0", "RAGQL_EMBEDDING_CACHE_TTL_S": "0"}


def _http(url: str, requests: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"kind": "http", "url": url, "requests": requests, **kw}


def run_all(bench: Bench, url: str, corpus: list[dict[str, Any]], queries: list[str], long_qs: list[str]) -> None:
    repeated = queries[1050:1100]  # 50 texts, embedded once in the warm-up
    auth = bench.auth()
    if bench.wants("search") or bench.wants("long"):
        _uncached(bench, url, queries, long_qs, auth)
    if any(bench.wants(g) for g in FIRST_SERVER_GROUPS):
        _first_server(bench, url, corpus, queries, auth)
    if bench.wants("cached"):
        _cached(bench, url, repeated, auth, bench.args.duration)
    if ("search_long_query", 1) in bench.figures and ("search_hybrid_uncached", 1) in bench.figures:
        _long_query_ratio(bench)


def _uncached(bench: Bench, url: str, queries: list[str], long_qs: list[str], auth: dict[str, str]) -> None:
    """Distinct and paragraph queries, every one encoded and searched: a server with no caches."""
    short = bench.args.duration
    with Server(url, bench.secret, bench.workdir, {**NO_CACHES, **_workers(bench.args)}) as server:
        gql = f"{server.base}/graphql"
        bench.report.emit(
            "info search_hybrid_uncached and search_long_query: RAGQL_SEARCH_CACHE_TTL_S=0 and "
            f"RAGQL_EMBEDDING_CACHE_TTL_S=0, {len(queries)} SciFact query texts and {len(long_qs)} "
            "paragraphs, cycled"
        )
        # Warm-up: the model's first calls and the pool's connections (nothing is cached here).
        warm = [search_body(q) for q in queries[:50]]
        bench.scenario("warmup", 1, _http(gql, warm, headers=auth, cycle=False, duration_s=60), record=False)
        if bench.wants("search"):
            typed = [search_body(q) for q in queries]
            for conc in (1, 16):
                bench.scenario("search_hybrid_uncached", conc, _http(gql, typed, headers=auth, duration_s=short))
        if bench.wants("long"):
            pasted = [search_body(q, 100) for q in long_qs]
            for conc in (1, 16):
                bench.scenario("search_long_query", conc, _http(gql, pasted, headers=auth, duration_s=short))


def _first_server(
    bench: Bench, url: str, corpus: list[dict[str, Any]], queries: list[str], auth: dict[str, str]
) -> None:
    """Every group but `cached` and the uncached loads, on one server with the result cache off."""
    a = bench.args
    short = a.duration
    peer_pool = queries[750 : 750 + ROUNDS * PEER_QUERIES]
    repeated = queries[1050:1100]  # 50 texts, embedded once in the warm-up
    # The floor embeds in this process, whose cache has seen none of them: any slice is fresh here.
    floor_pool = queries[:40]
    with Server(url, bench.secret, bench.workdir, {"RAGQL_SEARCH_CACHE_TTL_S": "0", **_workers(a)}) as server:
        gql = f"{server.base}/graphql"
        # Warm-up: the model's first calls, the pool's connections, the repeated texts' embeddings.
        bench.scenario(
            "warmup",
            1,
            _http(gql, [search_body(q) for q in repeated], headers=auth, cycle=False, duration_s=60),
            record=False,
        )
        if bench.wants("search"):
            for conc in (1, 16):
                bench.scenario(
                    "search_hybrid_embcached",
                    conc,
                    _http(gql, [search_body(q) for q in repeated], headers=auth, duration_s=short),
                )
        if bench.wants("recs"):
            recs_headers = [bench.auth(f"bench-user-{u}") for u in range(USERS)]
            for conc in (1, 16):
                bench.scenario(
                    "recommendations",
                    conc,
                    _http(gql, [{"query": RECS}] * USERS, headers_list=recs_headers, duration_s=short),
                )
        if bench.wants("answers"):
            _answers(bench, server, corpus, short)
        if bench.wants("overhead"):
            _graphql_overhead(bench, server, repeated, auth, short)
        if bench.wants("floor"):
            _floor(bench, url, floor_pool)
        if bench.wants("peer"):
            _peer(bench, server, url, peer_pool, auth)
        if bench.wants("ingest"):
            _ingest(bench, server, corpus, short)
        if bench.wants("held"):
            _held(bench, server, a.held)


def _cached(bench: Bench, url: str, repeated: list[str], auth: dict[str, str], short: float) -> None:
    # --workers 2 keeps the workers' caches coherent without Redis (api/host_versions.py); one
    # worker stays the default here: in the one lock hold measured (load ~3.5 from outside it),
    # two workers gave 241 rps at conc 16 against one worker's 509 (branch cached-1k, 2026-12-01).
    workers = str(bench.args.workers or CACHED_WORKERS)
    cache_on = {"RAGQL_SEARCH_CACHE_TTL_S": "300", "RAGQL_WORKERS": workers}
    with Server(url, bench.secret, bench.workdir, cache_on) as server:
        gql = f"{server.base}/graphql"
        bench.report.emit(
            "info search_hybrid_cached uses the in-process SearchCache (RAGQL_SEARCH_CACHE_TTL_S=300), "
            f"RAGQL_WORKERS={workers}, no Redis"
        )
        bench.scenario(
            "warmup",
            1,
            _http(gql, [search_body(q) for q in repeated], headers=auth, cycle=False, duration_s=60),
            record=False,
        )
        for conc in (1, 16):
            bench.scenario(
                "search_hybrid_cached",
                conc,
                _http(gql, [search_body(q) for q in repeated], headers=auth, duration_s=short),
            )


def _long_query_ratio(bench: Bench) -> None:
    long_p50 = bench.figures[("search_long_query", 1)].p50
    base_p50 = bench.figures[("search_hybrid_uncached", 1)].p50
    bench.ratio(
        "long_query",
        long_p50 / base_p50,
        f"search_long_query conc=1 p50 {long_p50:.1f} ms / search_hybrid_uncached conc=1 p50 {base_p50:.1f} ms",
    )


def _workers(args: Any) -> dict[str, str]:
    return {"RAGQL_WORKERS": str(args.workers)} if args.workers else {}


def _answers(bench: Bench, server: Server, corpus: list[dict[str, Any]], short: float) -> None:
    ws = f"ws://127.0.0.1:{server.port}/graphql"
    init = {"authorization": bench.auth()["authorization"]}
    # Distinct questions (each a cold answer): SciFact titles asked as questions.
    titles = [d["title"] for d in corpus if d.get("title")]
    plan = ((1, 0, 30), (16, 30, 230), (100, 230, 630))
    for conc, lo, hi in plan:
        reqs = [{"query": STREAM, "variables": {"q": f"What is known about {t.rstrip('.')}?"}} for t in titles[lo:hi]]
        spec = {
            "kind": "ws_answer",
            "url": ws,
            "init_payload": init,
            "requests": reqs,
            "cycle": False,
            "duration_s": short * (3 if conc == 100 else 1.5),
        }
        bench.scenario("answer_first_delta", conc, spec)


def _graphql_overhead(bench: Bench, server: Server, repeated: list[str], auth: dict[str, str], short: float) -> None:
    """Same domain call, same process, same warm query texts: /graphql vs the bare JSON route,
    alternating rounds at concurrency 1."""
    gql, bare = [], []
    for _ in range(ROUNDS):
        r = bench.scenario(
            "graphql",
            1,
            _http(f"{server.base}/graphql", [search_body(q) for q in repeated], headers=auth, duration_s=short / 2),
            record=False,
        )
        gql.append(r.p50)
        r = bench.scenario(
            "bare",
            1,
            _http(
                f"{server.base}/graphql-bench/search",
                [{"query": q, "first": 10} for q in repeated],
                headers=auth,
                duration_s=short / 2,
                check_graphql=False,
            ),
            record=False,
        )
        bare.append(r.p50)
    g, b = sorted(gql)[len(gql) // 2], sorted(bare)[len(bare) // 2]
    bench.ratio(
        "graphql_overhead",
        g / b,
        f"/graphql p50 {g:.2f} ms / bare JSON route p50 {b:.2f} ms (median of {ROUNDS} alternating rounds, conc 1)",
    )


def _floor(bench: Bench, url: str, fresh: list[str]) -> None:
    """End-to-end p50 / (one query embedding p50 + the same hybrid SQL p50 straight through asyncpg)."""
    if ("search_hybrid_uncached", 1) not in bench.figures:
        bench.ratio("floor", None, skipped="its numerator is search_hybrid_uncached conc 1: add search to --only")
        return
    emb_ms, sql_ms = asyncio.run(_floor_parts(bench, url, fresh))
    e2e = bench.figures[("search_hybrid_uncached", 1)].p50
    bench.ratio(
        "floor",
        e2e / (emb_ms + sql_ms),
        f"search_hybrid_uncached conc=1 p50 {e2e:.1f} ms / (query embedding p50 {emb_ms:.1f} ms "
        f"+ hybrid SQL p50 {sql_ms:.1f} ms)",
    )


async def _floor_parts(bench: Bench, url: str, fresh: list[str]) -> tuple[float, float]:
    import asyncpg
    from pgvector.asyncpg import register_vector

    from domain.persistence.database import SERVER_SETTINGS
    from domain.retrieval.search import SCAN_SCORE_SETTINGS, SearchOptions, build_sql

    embedder = bench.embedder  # type: ignore[attr-defined]
    emb: list[float] = []
    vectors = []
    for q in fresh:
        t0 = time.perf_counter()
        vectors.append(await embedder.embed_query(q))
        emb.append((time.perf_counter() - t0) * 1000)
    # The search's own SQL, with its named parameters as asyncpg's positional ones, and the
    # planner settings the search runs it with.
    sql = build_sql("HYBRID", "bm25", "", "default", scan_scores=True, with_text=False)
    for i, name in enumerate((":qv", ":tenant", ":k", ":qt"), start=1):
        sql = sql.replace(name, f"${i}")
    depth = min(200, max(SearchOptions().candidates, 20))
    conn = await asyncpg.connect(url, server_settings={**SERVER_SETTINGS, **SCAN_SCORE_SETTINGS})
    try:
        await register_vector(conn)
        stmt = await conn.prepare(sql)
        took: list[float] = []
        for _ in range(3):
            for q, v in zip(fresh, vectors, strict=True):
                t0 = time.perf_counter()
                await stmt.fetch(v, "default", depth, q)
                took.append((time.perf_counter() - t0) * 1000)
    finally:
        await conn.close()
    return percentile(emb, 50), percentile(took, 50)


def _peer(bench: Bench, server: Server, url: str, pool: list[str], auth: dict[str, str]) -> None:
    """ragql over HTTP at conc 1 vs LanceDB's in-process hybrid search, alternating rounds, each
    round on fresh query texts for both (query encoding included, same int8 MiniLM)."""
    if importlib.util.find_spec("lancedb") is None and not (LANCE_DEPS / "lancedb").exists():
        bench.ratio(
            "peer_lancedb", None, skipped=f"lancedb not installed in {LANCE_DEPS.name}/: see README 'make bench'"
        )
        return
    table_dir = bench.data_dir / "lancedb-scifact"
    ours, theirs = [], []
    for r in range(ROUNDS):
        qs = pool[r * PEER_QUERIES : (r + 1) * PEER_QUERIES]
        fig = bench.scenario(
            "peer_ragql",
            1,
            _http(f"{server.base}/graphql", [search_body(q) for q in qs], headers=auth, cycle=False, duration_s=120),
            record=False,
        )
        ours.append(fig.p50)
        theirs.append(_lance_round(url, table_dir, qs, bench.workdir))
    o, t = sorted(ours)[ROUNDS // 2], sorted(theirs)[ROUNDS // 2]
    bench.ratio(
        "peer_lancedb",
        o / t,
        f"ragql /graphql conc=1 p50 {o:.1f} ms / LanceDB in-process hybrid p50 {t:.1f} ms "
        f"(median of {ROUNDS} alternating rounds of {PEER_QUERIES} fresh queries; "
        f"rounds ragql {[round(x, 1) for x in ours]} lancedb {[round(x, 1) for x in theirs]})",
    )


def _lance_round(url: str, table_dir: Path, qs: list[str], workdir: Path) -> float:
    spec = workdir / f"lance-{time.monotonic_ns()}.json"
    spec.write_text(json.dumps({"url": url, "table_dir": str(table_dir), "queries": qs}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(LANCE_DEPS)]))
    out = subprocess.run(
        [sys.executable, "-m", "bench.peer_lancedb", str(spec)],
        env=env,
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the LanceDB round failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["p50_ms"])


ASYNC_INGEST = (
    "mutation($docs: [DocumentInput!]!) { ingestDocuments(input: {documents: $docs, mode: ASYNC}) "
    "{ job { id } errors { code message } } }"
)
JOB_STATE = "query($id: ID!) { ingestionJob(id: $id) { state chunksEmbedded documentsFailed } }"
INGEST_DOCUMENTS = 2048
INGEST_REQUEST = 256  # documents per ASYNC request: SciFact's fit the 1 MB body limit


def _ingest(bench: Bench, server: Server, corpus: list[dict[str, Any]], short: float) -> None:
    """chunks/s through the job path, as a client with a corpus uses it: 2,048 SciFact documents
    (fresh external ids, a tenant of its own emptied first) sent as ASYNC ingestDocuments of 256,
    run by one `ragql worker` process beside the server (RAGQL_WORKER_CONCURRENCY jobs at once);
    the clock runs from the first request to the last job's end."""
    asyncio.run(_empty_ingest_tenant(bench))
    editor = bench.auth("bench-ingest", INGEST_TENANT, ["editor"])
    run = int(time.time())
    docs = [
        {"title": d["title"] or d["_id"], "text": d["text"] or d["title"], "externalId": f"{run}-{d['_id']}"}
        for d in corpus[:INGEST_DOCUMENTS]
    ]
    with _JobWorker(server, bench.workdir):
        load_before = _load()
        started = time.monotonic()
        with httpx.Client(base_url=server.base, headers=editor, timeout=120.0) as http:
            jobs = []
            for i in range(0, len(docs), INGEST_REQUEST):
                body = http.post(
                    "/graphql", json={"query": ASYNC_INGEST, "variables": {"docs": docs[i : i + INGEST_REQUEST]}}
                )
                jobs.append(body.json()["data"]["ingestDocuments"]["job"]["id"])
            finished: dict[str, dict[str, Any]] = {}
            while len(finished) < len(jobs):
                for job in jobs:
                    if job not in finished:
                        got = http.post("/graphql", json={"query": JOB_STATE, "variables": {"id": job}})
                        state = got.json()["data"]["ingestionJob"]
                        if state["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                            finished[job] = state
                time.sleep(0.2)
                if time.monotonic() - started > 900:
                    raise RuntimeError("the ingest jobs did not finish within 15 minutes")
        wall = time.monotonic() - started
    chunks = sum(int(j["chunksEmbedded"]) for j in finished.values())
    failed = sum(int(j["documentsFailed"]) for j in finished.values())
    bench.report.emit(
        f"bench ingest_jobs documents={len(docs)} jobs={len(jobs)} chunks={chunks} failed={failed} "
        f"wall_s={wall:.1f} chunks_per_s={chunks / wall:.1f} load={load_before}",
        {
            "scenario": "ingest_jobs",
            "documents": len(docs),
            "chunks": chunks,
            "wall_s": wall,
            "chunks_per_s": chunks / wall,
        },
    )


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


class _JobWorker:
    """`ragql worker` with the server's settings, for the time of the ingest scenario."""

    def __init__(self, server: Server, workdir: Path) -> None:
        self.env = {**server.env, "RAGQL_METRICS_PORT": "0"}
        self.log = workdir / "ingest-worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _JobWorker:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "worker"], env=self.env, cwd=ROOT, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 300
        while "worker ready" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the ingest worker did not start:\n{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


async def _store(bench: Bench) -> Any:
    import asyncpg

    return await asyncpg.connect(bench.store_url)  # type: ignore[attr-defined]


async def _empty_ingest_tenant(bench: Bench) -> None:
    conn = await _store(bench)
    try:
        await conn.execute("DELETE FROM documents WHERE tenant_id = $1", INGEST_TENANT)
    finally:
        await conn.close()


async def _count_chunks(bench: Bench) -> int:
    conn = await _store(bench)
    try:
        n: int = await conn.fetchval("SELECT count(*) FROM chunks WHERE tenant_id = $1", INGEST_TENANT)
        return n
    finally:
        await conn.close()


def _tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's workers with RAGQL_WORKERS > 1)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, ValueError):
            pass
    return out


def _tree_rss_kib(pid: int) -> int:
    return sum(_proc_status_kib(p, "VmRSS") or 0 for p in _tree(pid))


class TreeRssSampler:
    """Peak RSS of the server and all its workers together, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kib = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _tree_rss_kib(self.pid))
            self._stop.wait(0.2)


def _held(bench: Bench, server: Server, n: int) -> None:
    ws = f"ws://127.0.0.1:{server.port}/graphql"
    init = {"authorization": bench.auth()["authorization"]}
    qs = [
        f"Which studies report on {t}?"
        for t in ("vitamin D", "statins", "BRCA1", "microRNA", "obesity", "malaria", "insulin", "T cells")
    ]
    reqs = [{"query": STREAM, "variables": {"q": f"{q} ({i})"}} for i, q in enumerate(qs * (n // len(qs) + 1))][:n]
    before = _tree_rss_kib(server.pid)
    sampler = TreeRssSampler(server.pid)
    sampler.start()
    try:
        bench.scenario(
            "subscriptions_held",
            n,
            {"kind": "ws_held", "url": ws, "init_payload": init, "requests": reqs, "duration_s": 300},
        )
    finally:
        sampler.stop()
    peak = sampler.peak_kib / 1024
    bench.report.emit(
        f"info subscriptions_held conc={n} server_rss_before_mib={(before or 0) / 1024:.0f} peak_rss_mib={peak:.0f} "
        f"(p50 etc. are times to the first AnswerDelta with all {n} open)",
        {"held": n, "peak_rss_mib": peak, "rss_before_mib": (before or 0) / 1024},
    )
