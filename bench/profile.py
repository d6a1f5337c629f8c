"""`python -m bench profile`: where the server's CPU goes under search load (issue 18).

The bench's server (bench/harness.py: production settings, the eval's store) under the bench's
load generator, with py-spy sampling the serving process(es) during each step: `emb1`, `emb16`
(repeated queries, embedding cached; with `--cache` the result cache is on too, so these are
cache hits), `unc1`, `unc16` (distinct queries). py-spy is in the bench extra (`pip install -e
'.[bench]'`, which `make bench` runs), never a dependency of ragql; it needs ptrace, so root or
CAP_SYS_PTRACE.

Each step writes py-spy's collapsed stacks (`--format raw`) and prints the share of samples per
part of the serving path, each sample given to the first part found from its leaf up. Under
uvloop py-spy cannot tell the database driver's CPU from its waits on PostgreSQL, so the
driver's share is partly round-trip time; compare runs by it, don't add it to the others.
"""

from __future__ import annotations

import asyncio
import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.harness import Bench, Report, Server, _prepare_store, _queries, search_body
from bench.scenarios import _http, _tree

SPY_FORMAT = ("--format", "raw", "--nonblocking", "-o")
# (part, pattern on a frame), tried from each sample's leaf frame up; the first match counts.
PARTS = [
    ("snippets", r"domain/retrieval/snippets"),
    ("query encoder (ONNX)", r"onnx_embedder|onnxruntime"),
    ("graphql validation", r"graphql/validation|query_depth_limiter|schema/validation"),
    ("max tokens limiter", r"max_tokens"),
    ("query cost", r"schema/cost"),
    ("input guard", r"input_guard"),
    ("query log", r"_write_log|query_log"),
    ("database driver (asyncpg)", r"asyncpg"),
    ("SQLAlchemy session/ORM", r"sqlalchemy/"),
    ("search domain (fusion, hits)", r"domain/retrieval/"),
    ("graphql execution", r"graphql/execution|strawberry/schema|strawberry/types|strawberry/permission|resolvers/"),
    ("metrics, traces, logs", r"observability|opentelemetry|prometheus|logging/"),
    ("strawberry HTTP", r"strawberry/"),
    ("auth, guard, rate limits", r"api/(guard|auth|ratelimit|graphql_router)|jwt/"),
    ("HTTP protocol (uvicorn)", r"h11|uvicorn/protocols|httptools"),
    ("starlette/fastapi", r"starlette|fastapi"),
    ("event loop (and idle)", r"Runner\.run|asyncio"),
]


def summarise(path: Path) -> list[tuple[str, float]]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    patterns = [(name, re.compile(p)) for name, p in PARTS]
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        frames, samples = stack.split(";"), int(n)
        total += samples
        part = next((name for f in reversed(frames) for name, rx in patterns if rx.search(f)), "other")
        counts[part] += samples
    return [(part, 100 * n / max(total, 1)) for part, n in counts.most_common()]


def run_profile(args: Any) -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: pip install -c constraints.txt -e '.[bench]'")
    bench = Bench(args, Report())
    url, _corpus = asyncio.run(_prepare_store(bench))
    queries = _queries(bench.dataset)
    repeated = queries[1050:1100]
    steps = {
        "emb1": (1, repeated, True),
        "emb16": (16, repeated, True),
        "unc1": (1, queries[:300], False),
        "unc16": (16, queries[300:1000], False),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = {"RAGQL_SEARCH_CACHE_TTL_S": "300" if args.cache else "0"}
    if args.workers:
        extra["RAGQL_WORKERS"] = str(args.workers)
    auth = bench.auth()
    with Server(url, bench.secret, bench.workdir, extra) as server:
        gql = f"{server.base}/graphql"
        warm = _http(gql, [search_body(q) for q in repeated], headers=auth, cycle=False, duration_s=60)
        bench.scenario("warmup", 1, warm, record=False)
        for step in args.steps.split(","):
            conc, pool, cycle = steps[step]
            workers = [p for p in _tree(server.pid) if p != server.pid] if args.workers > 1 else [server.pid]
            files = [out / f"{step}-{pid}.txt" for pid in workers]
            seconds = str(max(1, int(args.duration) - 2))
            spies = [
                subprocess.Popen(
                    [py_spy, "record", "--pid", str(pid), "-r", "200", "-d", seconds, *SPY_FORMAT, str(f)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for pid, f in zip(workers, files, strict=True)
            ]
            load = [search_body(q) for q in pool]
            bench.scenario(step, conc, _http(gql, load, headers=auth, cycle=cycle, duration_s=args.duration))
            for spy in spies:
                spy.wait()
            for f in files:
                if f.exists():
                    print(f"info profile {step} {f.name}: " + ", ".join(f"{p} {v:.1f}%" for p, v in summarise(f)))
