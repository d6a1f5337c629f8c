"""`make bench` (`python -m bench run`): the real server under load, each figure beside a floor or a peer.

What it does, in order:
1. SciFact in the cached embedded store the eval uses (`.ragql-eval/pgdata-<chunking>-<backend>`;
   ingest is idempotent, so a second run embeds nothing), plus 1,000 simulated users with feedback
   (seeded once, kept in the same store).
2. The real server as a subprocess: `ragql serve` (uvicorn on 127.0.0.1) with production settings, a
   random bench JWT secret and RAGQL_DATABASE_URL pointing at that store; one with every cache off
   for the uncached loads, one with the result cache off for the rest, one with it on (cached).
3. Every scenario is driven by a separate process on loopback whose CPU is reported beside each
   figure, bounded in time: wrk for HTTP loads when it is installed (bench/wrk_load.py), else
   `python -m bench.loadgen`, which also drives the websockets.
4. Ratios are measured in the same run: GraphQL against a bare JSON route (RAGQL_BENCH_ROUTE=1),
   end to end against the floor (one query embedding + the same SQL straight through asyncpg), and
   ragql against LanceDB in process (alternating rounds).

Output: one line per figure, `bench <scenario> conc=<n> p50_ms=... p95_ms=... p99_ms=... rps=...
errors=<n>` and `ratio <name> <value>`; `info` lines add the context (load average, load generator
CPU, RSS). Everything also goes to bench/results/<date>.json."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api import embedded
from api.settings import Settings
from bench.beir import TENANT, ingest_corpus, load, store_tag
from bench.stats import percentile
from bench.streams import _free_port, _stop_server, _tail

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
USERS = 1000
EVENTS_PER_USER = 5
INGEST_TENANT = "bench-ingest"
READY_TIMEOUT_S = 240.0
SEARCH = (
    "query($q: String!, $first: Int!) { search(query: $q, first: $first, options: {mode: HYBRID}) "
    "{ tookMs totalCandidates hits { score snippet document { id title } } } }"
)
RECS = "query { recommendations(first: 10) { items { score document { id title } } } }"
STREAM = (
    "subscription($q: String!) { answerStream(question: $q) { __typename ... on AnswerDelta { text } "
    "... on AnswerError { code message } } }"
)
INGEST = (
    "mutation($docs: [DocumentInput!]!) { ingestDocuments(input: {documents: $docs}) "
    "{ chunksEmbedded errors { code message } } }"
)


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def emit(self, line: str, record: dict[str, Any] | None = None) -> None:
        print(line, flush=True)
        self.lines.append(line)
        if record is not None:
            self.records.append(record)


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


@dataclass
class Figure:
    p50: float
    p95: float
    p99: float
    rps: float
    errors: int
    n: int
    loadgen_cpu_s: float
    wall_s: float
    reasons: dict[str, int]
    generator: str = "httpx"


def summarise(result: dict[str, Any]) -> Figure:
    lat: list[float] = result["latencies_ms"]
    wall = max(result["wall_s"], 1e-9)
    # wrk times failed responses too, and says how many succeeded; httpx keeps successes only.
    ok = int(result.get("ok", len(lat)))
    return Figure(
        p50=percentile(lat, 50) if lat else float("nan"),
        p95=percentile(lat, 95) if lat else float("nan"),
        p99=percentile(lat, 99) if lat else float("nan"),
        rps=ok / wall,
        errors=result["errors"],
        n=ok,
        loadgen_cpu_s=result["cpu_s"],
        wall_s=wall,
        reasons=result["reasons"],
        generator=str(result.get("generator", "httpx")),
    )


class Server:
    """`ragql serve` in production mode on loopback, against the bench's store."""

    def __init__(self, url: str, secret: str, workdir: Path, extra: dict[str, str]) -> None:
        self.port = _free_port()
        self.log_path = workdir / f"server-{self.port}.log"
        env = dict(os.environ)
        env.update(
            RAGQL_ENV="production",
            RAGQL_JWT_SECRET=secret,
            RAGQL_DATABASE_URL=url,
            RAGQL_HOST="127.0.0.1",
            RAGQL_PORT=str(self.port),
            RAGQL_LOG_LEVEL="warning",
            RAGQL_LOAD_DEMO="false",
            RAGQL_DATA_DIR=str(workdir),
            RAGQL_BENCH_ROUTE="1",
            # Paragraph queries (search_long_query) are up to 4,000 characters.
            RAGQL_MAX_QUERY_CHARS="10000",
            # A load test is one principal from one IP: lift per-caller rates and the socket cap
            # (answer_first_delta opens 100 sockets, subscriptions_held 500, all with one token).
            RAGQL_RATE_PER_IP=str(10**9),
            RAGQL_RATE_PER_USER=str(10**9),
            RAGQL_RATE_PER_API_KEY=str(10**9),
            RAGQL_TENANT_QUOTA=str(10**9),
            RAGQL_ADMISSION_PER_IP_PER_S=str(10**7),
            RAGQL_MAX_WEBSOCKETS_PER_PRINCIPAL="2000",
            # And the handshake's cap: sockets that have not sent connection_init yet, per client
            # address (default 20). 100 or 500 clients connecting at once from 127.0.0.1 exceed it.
            RAGQL_MAX_UNIDENTIFIED_WEBSOCKETS_PER_IP="2000",
        )
        env.update(extra)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from api.cli import main; main()", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited during start-up:\n{_tail(self.log_path)}")
                try:
                    if client.get(f"{self.base}/readyz").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
        raise TimeoutError(f"the server was not ready in {READY_TIMEOUT_S:.0f} s:\n{_tail(self.log_path)}")

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None:
            _stop_server(self.proc)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def run_load(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=workdir, delete=False) as fh:
        json.dump(spec, fh)
        spec_path = fh.name
    out_path = spec_path.replace(".json", ".out.json")
    subprocess.run(
        [sys.executable, "-m", "bench.loadgen", spec_path, out_path],
        check=True,
        cwd=ROOT,
        timeout=float(spec.get("duration_s", 10)) + 180,
    )
    result: dict[str, Any] = json.loads(Path(out_path).read_text())
    return result


def search_body(q: str, first: int = 10) -> dict[str, Any]:
    return {"query": SEARCH, "variables": {"q": q, "first": first}}


class Bench:
    def __init__(self, args: Any, report: Report) -> None:
        self.args = args
        self.report = report
        self.settings = Settings()
        self.secret = secrets.token_urlsafe(48)
        self.workdir = Path(tempfile.mkdtemp(prefix="ragql-bench-run-"))
        # Server logs and load specs: gone with the run (a failed server's log tail is printed).
        weakref.finalize(self, shutil.rmtree, self.workdir, ignore_errors=True)
        self.dataset = Path(args.dataset).resolve()
        self.data_dir = Path(args.data_dir).resolve()
        self.figures: dict[tuple[str, int], Figure] = {}
        self.only = {g.strip() for g in (getattr(args, "only", "") or "").split(",") if g.strip()}

    def wants(self, group: str) -> bool:
        """Whether `--only` (a comma list of scenario groups; empty: all) includes this group."""
        return not self.only or group in self.only

    # --- tokens -------------------------------------------------------------------------
    def token(self, subject: str, tenant: str = TENANT, roles: list[str] | None = None) -> str:
        from api.auth.tokens import JwtVerifier
        from api.bootstrap import jwt_config

        prod = Settings(env="production", jwt_secret=self.secret, database_url="postgresql://bench@127.0.0.1/x")
        return JwtVerifier(jwt_config(prod)).issue(
            subject=subject, tenant=tenant, roles=roles or ["reader"], ttl_s=4 * 3600
        )

    def auth(self, subject: str = "bench", tenant: str = TENANT, roles: list[str] | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(subject, tenant, roles)}"}

    # --- one scenario -------------------------------------------------------------------
    def scenario(self, name: str, conc: int, spec: dict[str, Any], *, record: bool = True) -> Figure:
        spec = {"concurrency": conc, "generator": getattr(self.args, "loadgen", "auto"), **spec}
        load_before = load_average()
        fig = summarise(run_load(spec, self.workdir))
        if record:
            self.figures[(name, conc)] = fig
            self.report.emit(
                f"bench {name} conc={conc} p50_ms={fig.p50:.1f} p95_ms={fig.p95:.1f} p99_ms={fig.p99:.1f} "
                f"rps={fig.rps:.1f} errors={fig.errors}",
                {
                    "scenario": name,
                    "conc": conc,
                    "p50_ms": fig.p50,
                    "p95_ms": fig.p95,
                    "p99_ms": fig.p99,
                    "rps": fig.rps,
                    "errors": fig.errors,
                    "n": fig.n,
                    "loadgen_cpu_s": fig.loadgen_cpu_s,
                    "loadgen": fig.generator,
                    "wall_s": fig.wall_s,
                    "loadavg_before": load_before,
                    "loadavg_after": load_average(),
                    "error_reasons": fig.reasons,
                },
            )
            self.report.emit(
                f"info {name} conc={conc} n={fig.n} wall_s={fig.wall_s:.1f} loadgen={fig.generator} "
                f"loadgen_cpu_s={fig.loadgen_cpu_s:.1f} ({fig.loadgen_cpu_s / fig.wall_s:.2f} cores) "
                f"loadavg={load_before}->{load_average()}"
                + (f" first_error={next(iter(fig.reasons))!r}" if fig.reasons else "")
            )
        return fig

    def ratio(self, name: str, value: float | None, detail: str = "", skipped: str | None = None) -> None:
        if skipped is not None:
            self.report.emit(f"ratio {name} skipped ({skipped})", {"ratio": name, "skipped": skipped})
            return
        assert value is not None
        self.report.emit(f"ratio {name} {value:.2f}", {"ratio": name, "value": value, "detail": detail})
        if detail:
            self.report.emit(f"info ratio {name}: {detail}")


def _queries(dataset: Path) -> list[str]:
    """Every SciFact query text (train and test), in a fixed shuffled order: slices of it are
    distinct queries that no earlier scenario of the run has embedded."""
    texts = sorted({json.loads(line)["text"] for line in (dataset / "queries.jsonl").open(encoding="utf-8")})
    random.Random(18).shuffle(texts)
    return texts


LONG_QUERIES = 300  # search_long_query's pool of pasted paragraphs


def _long_queries(corpus: list[dict[str, Any]], n: int) -> list[str]:
    """Paragraph queries of 1,000-4,000 characters: runs of SciFact abstracts, cut to a length."""
    rng = random.Random(4)
    texts = [d["text"] for d in corpus if d.get("text")]
    out = []
    for _ in range(n):
        want = rng.randint(1000, 4000)
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < want:
            parts.append(rng.choice(texts))
        out.append(" ".join(parts)[:want])
    return out


async def _prepare_store(bench: Bench) -> tuple[str, list[dict[str, Any]]]:
    from api.bootstrap import build_embedder, build_learning
    from domain.answers.sentence_vectors import backfill
    from domain.documents.service import ChunkingConfig
    from domain.persistence.database import Database
    from domain.persistence.migrate import check_embedding_model, migrate
    from domain.tenancy import ensure_tenant

    settings = bench.settings
    tag = store_tag(settings)
    url = embedded.start(bench.data_dir / f"pgdata-{tag}")
    corpus, _queries_by_id, _ = load(bench.dataset, "test")
    embedder = build_embedder(settings)
    db = Database(url)
    try:
        await migrate(db, embedding_dim=embedder.dim)
        await check_embedding_model(db, model=embedder.name, dim=embedder.dim)
        if await _stored_documents(db) != len(corpus):
            chunking = ChunkingConfig(settings.chunk_tokens, settings.chunk_overlap_tokens)
            await ingest_corpus(db, embedder, corpus, chunking)
        else:  # every document is there: resubmitting the job only finds each one unchanged (~1 min)
            print(f"store: the {len(corpus)} SciFact documents are ingested already", flush=True)
        # What `ragql embed-sentences` does: the answers then find their sources' sentence vectors
        # stored, as after any earlier answer over the same chunks (cached, like the ingest).
        started = time.perf_counter()
        stored = await backfill(db, embedder, TENANT)
        print(f"sentence vectors: {stored} chunks embedded in {time.perf_counter() - started:.1f}s", flush=True)
        await ensure_tenant(db, INGEST_TENANT)
        await _seed_users(db, build_learning(settings))
    finally:
        await db.dispose()
    bench.embedder = embedder  # type: ignore[attr-defined]
    return url, corpus


async def _stored_documents(db: Any) -> int:
    from sqlalchemy import text

    async with db.session(TENANT) as s:
        return int((await s.execute(text("SELECT count(*) FROM documents"))).scalar_one())


async def _seed_users(db: Any, learning: Any) -> None:
    """1,000 simulated users, each with a few feedback events on SciFact documents (seeded once)."""
    from sqlalchemy import text
    from tqdm import tqdm

    from domain.feedback import service as feedback

    async with db.session(TENANT) as s:
        have = (
            await s.execute(text("SELECT count(DISTINCT user_id) FROM feedback WHERE user_id LIKE 'bench-user-%'"))
        ).scalar_one()
        doc_ids = [r[0] for r in (await s.execute(text("SELECT id FROM documents ORDER BY id"))).all()]
    if have >= USERS:
        return
    rng = random.Random(7)
    kinds = ["LIKE", "CLICK", "VIEW", "WATCHED", "LIKE"]
    for u in tqdm(range(USERS), desc="seed users", unit="user"):
        # Each user reads around one topic: a few documents close in id order (ids are random,
        # so this is a random but consistent taste).
        start = rng.randrange(len(doc_ids) - 20)
        for k in range(EVENTS_PER_USER):
            req = feedback.FeedbackRequest(
                user_id=f"bench-user-{u}",
                kind=kinds[k],  # type: ignore[arg-type]
                document_id=doc_ids[start + rng.randrange(20)],
                idempotency_key=f"bench-seed-{u}-{k}",
            )
            await feedback.submit(db, TENANT, req, learning)


def run_harness(args: Any) -> None:
    for noisy in ("httpx", "pgserver", "alembic"):  # one line per poll, per pg_ctl call otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    report = Report()
    bench = Bench(args, report)
    started = time.time()
    url, corpus = asyncio.run(_prepare_store(bench))
    bench.store_url = url  # type: ignore[attr-defined]
    queries = _queries(bench.dataset)
    report.emit(f"info store {url.split('?')[0]} queries={len(queries)} docs={len(corpus)} loadavg={load_average()}")
    from bench import scenarios

    scenarios.run_all(bench, url, corpus, queries, _long_queries(corpus, LONG_QUERIES))
    # A partial run (--only) never overwrites the day's full results file.
    write_results(report, started, "run", suffix="-only-" + "-".join(sorted(bench.only)) if bench.only else "")


def write_results(report: Report, started: float, command: str, suffix: str) -> None:
    """Every line and record of a bench run to `bench/results/<date><suffix>.json`, with the command
    that made it, so a README figure can be traced to its file."""
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC)
    out = RESULTS / f"{stamp:%Y-%m-%d}{suffix}.json"
    out.write_text(
        json.dumps(
            {
                "started_utc": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
                "finished_utc": stamp.isoformat(),
                "command": f"python -m bench {command} " + " ".join(sys.argv[2:]),
                "cpus": os.cpu_count(),
                "lines": report.lines,
                "records": report.records,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"info results written to {out.relative_to(ROOT)} in {time.time() - started:.0f} s", flush=True)
