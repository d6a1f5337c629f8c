"""`make bench-scale` (`python -m bench scale --sizes 10k,100k,1m`): how search's cost grows with
the corpus, one tenant of 10k, 100k and 1M chunks (bench/scale_corpus.py says where the rows come
from and how they are loaded; each size is its own cached store under `.ragql-bench/scale/`).

Per size, in order:
1. The store: built once (COPY, then the indexes, timed), reused afterwards. A PostgreSQL restart
   leaves pg_textsearch 1.0's index answering nothing (see index_health): the probe repairs it, and
   the repair time is reported too.
2. The dense leg alone, straight through asyncpg, on 100 SciFact test queries: recall@10 of the
   HNSW index scan against exact search (the same query with index scans off, a sequential scan
   and a sort; cached per size) and its p50, at each `hnsw.ef_search` in `--ef`. Optionally
   (`--halfvec`) the same for an HNSW index over `embedding::halfvec`, built beside the stored one
   and dropped afterwards, with its build time and size.
3. The real server (`ragql serve`, production settings, loopback) against that store, driven by
   the bench's load generator: `search_hybrid_embcached` (50 repeated queries, the embedding cache
   warm, the result cache off) and `search_hybrid_uncached` (the query texts cycled on a server
   with every cache off), conc 1 and 16.
4. RAM (shared_buffers; RSS and PSS of every PostgreSQL process of the store, after the load) and
   disk (the partition's heap + TOAST, each index).

Output: the harness's `bench ...` lines with a `size=` field, `info` lines for the rest, and
everything in bench/results/<date>-scale.json."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from api import embedded
from bench.beir import store_tag
from bench.harness import ROOT, Bench, Report, Server, _queries, load_average, search_body, write_results
from bench.scale_corpus import NOISE_COSINE, TENANT, load_corpus, read_source, write_json
from bench.stats import percentile

SCALE_DIR = (ROOT / ".ragql-bench" / "scale").resolve()
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
RECALL_QUERIES = 100
# A returned neighbour within this cosine distance of the exact 10th counts as "near" (near_recall).
NEAR_TIE = 0.005
DEPTH = 50  # what the search asks of each leg for `first: 10` (max(candidates 50, 2 x first))


def parse_sizes(text: str) -> list[tuple[str, int]]:
    out = []
    for name in text.lower().split(","):
        name = name.strip()
        if name not in SIZES:
            raise SystemExit(f"bench scale: unknown size {name!r}; use {', '.join(SIZES)}")
        out.append((name, SIZES[name]))
    return out


def run_scale(args: Any) -> None:
    report = Report()
    started = time.time()
    bench = Bench(args, report)
    queries = _queries(bench.dataset)
    for name, size in parse_sizes(args.sizes):
        _one_size(bench, name, size, queries)
    kind = "scale-prepare" if args.prepare else "scale-recall" if args.recall_only else "scale"
    write_results(report, started, "scale", suffix=f"-{kind}-{args.sizes.replace(',', '-')}")


def _one_size(bench: Bench, name: str, size: int, queries: list[str]) -> None:
    import pgserver

    report, args = bench.report, bench.args
    pgdata = SCALE_DIR / f"pgdata-{name}"
    # --prepare leaves the store running, so the measuring run that follows attaches to it without
    # a restart (which would cost a BM25 repair, pg_textsearch 1.0) and finds its pages cached.
    url = embedded.start(pgdata, cleanup_mode=None if args.prepare or args.recall_only else "stop")
    try:
        build = asyncio.run(_ensure_store(bench, url, pgdata, size))
        report.emit(
            f"info scale size={name} chunks={size} documents={build['documents']} "
            f"embedding={build['embedding_type']} copy_s={build['copy_s']:.1f} "
            f"hnsw_build_s={build['hnsw_build_s']:.1f} bm25_build_s={build['bm25_build_s']:.1f} "
            f"btree_build_s={build['btree_build_s']:.1f} loadavg_during_build={build['loadavg']} "
            f"built_utc={build['built_utc']}",
            {"size": name, "build": build},
        )
        health = asyncio.run(_repair_bm25(url))
        if health is not None:
            report.emit(
                f"info scale size={name} bm25_repaired_at_start_s={health:.1f} (pg_textsearch 1.0 restart)",
                {"size": name, "bm25_repair_s": health},
            )
        test_queries = _test_queries(bench.dataset)[:RECALL_QUERIES]
        if args.prepare:
            probe = asyncio.run(_prepare_measures(bench, url, name, test_queries, args.halfvec))
            if probe:
                report.emit(
                    f"info scale size={name} halfvec_probe_build_s={probe['build_s']:.1f} "
                    f"halfvec_index_mib={probe['index_mib']:.0f} vector_column_mib f32={probe['f32_mib']:.0f} "
                    f"f16={probe['f16_mib']:.0f} loadavg={probe['loadavg']}",
                    {"size": name, "halfvec_probe": probe},
                )
            return
        sweep = asyncio.run(_recall_sweep(bench, url, name, test_queries, args.ef, drop_probe=not args.recall_only))
        for row in sweep:
            report.emit(
                f"info scale size={name} index={row['index']} ef_search={row['ef_search']} "
                f"recall@10={row['recall_at_10']:.4f} near_recall@10={row['near_recall_at_10']:.4f} "
                f"tenth_gap={row['tenth_distance_gap']:.4f} dense_leg_p50_ms={row['p50_ms']:.2f} "
                f"dense_leg_p95_ms={row['p95_ms']:.2f} loadavg={row['loadavg']}",
                {"size": name, "recall": row},
            )
        if args.recall_only:
            return
        _load(bench, name, url, queries, args)
        mem, disk = asyncio.run(_footprint(url, pgdata))
        report.emit(
            f"info scale size={name} shared_buffers={mem['shared_buffers']} pg_rss_mib={mem['rss_mib']:.0f} "
            f"pg_pss_mib={mem['pss_mib']:.0f} heap_mib={disk['heap_mib']:.0f} "
            + " ".join(f"{k}_mib={v:.0f}" for k, v in disk["indexes"].items()),
            {"size": name, "memory": mem, "disk": disk},
        )
    finally:
        if not (args.prepare or args.recall_only):
            pgserver.get_server(pgdata).cleanup()


async def _ensure_store(bench: Bench, url: str, pgdata: Path, size: int) -> dict[str, Any]:
    from api.bootstrap import build_embedder
    from domain.persistence.database import Database
    from domain.persistence.migrate import check_embedding_model, migrate

    meta = pgdata.parent / f"build-{pgdata.name.removeprefix('pgdata-')}.json"
    embedder = build_embedder(bench.settings)
    bench.embedder = embedder  # type: ignore[attr-defined]
    db = Database(url)
    try:
        await migrate(db, embedding_dim=embedder.dim)
        await check_embedding_model(db, model=embedder.name, dim=embedder.dim)
    finally:
        await db.dispose()
    if meta.exists():
        built: dict[str, Any] = json.loads(meta.read_text())
        if built.get("size") == size:
            return built
    settings = bench.settings
    tag = store_tag(settings)
    source = await read_source(embedded.start(bench.data_dir / f"pgdata-{tag}"))
    print(f"info building {size} chunks from {len(source)} SciFact chunks (noise cosine {NOISE_COSINE})", flush=True)
    load_before = load_average()
    timings = await load_corpus(url, source, size, maintenance_work_mem=bench.args.maintenance_work_mem)
    timings.update(
        loadavg=f"{load_before}->{load_average()}",
        built_utc=dt.datetime.now(dt.UTC).isoformat(),
        source_chunks=len(source),
        noise_cosine=NOISE_COSINE,
        maintenance_work_mem=bench.args.maintenance_work_mem,
    )
    write_json(meta, timings)
    return timings


async def _repair_bm25(url: str) -> float | None:
    from domain.persistence.database import Database
    from domain.retrieval.index_health import ensure_bm25_healthy

    db = Database(url)
    try:
        health = await ensure_bm25_healthy(db, "bm25")
    finally:
        await db.dispose()
    return health.repair_seconds if health.repaired else None


def _test_queries(dataset: Path) -> list[str]:
    from bench.beir import load

    _, queries, qrels = load(dataset, "test")
    return [queries[q] for q in sorted(qrels)]


async def _connect(url: str) -> Any:
    import asyncpg
    from pgvector.asyncpg import register_vector

    from domain.persistence.database import SERVER_SETTINGS

    conn = await asyncpg.connect(url, server_settings=SERVER_SETTINGS)
    await register_vector(conn)
    return conn


async def _column_type(conn: Any) -> str:
    kind: str = await conn.fetchval(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
    )
    return kind


async def _prepare_measures(bench: Bench, url: str, name: str, texts: list[str], halfvec: bool) -> dict[str, Any]:
    """Outside the measurement lock: the exact top-10s (ground truth, not a timing) and, with
    --halfvec, the probe index (its build time is reported like the other builds: unlocked)."""
    from domain.retrieval.tenant_index import chunk_partition

    embedder = bench.embedder  # type: ignore[attr-defined]
    vectors = [await embedder.embed_query(q) for q in texts]
    part = chunk_partition(TENANT)
    conn = await _connect(url)
    try:
        kind = await _column_type(conn)
        await _exact(conn, name, part, kind, texts, vectors)
        if halfvec and not kind.startswith("halfvec"):
            probe = await _build_halfvec_probe(conn, part, len(vectors[0]), bench.args.maintenance_work_mem)
            write_json(SCALE_DIR / f"halfvec-probe-{name}.json", probe)
            return probe
    finally:
        await conn.close()
    return {}


async def _recall_sweep(
    bench: Bench, url: str, name: str, texts: list[str], efs: list[int], *, drop_probe: bool
) -> list[dict[str, Any]]:
    from domain.retrieval.tenant_index import chunk_partition

    embedder = bench.embedder  # type: ignore[attr-defined]
    vectors = [await embedder.embed_query(q) for q in texts]
    part = chunk_partition(TENANT)
    conn = await _connect(url)
    rows: list[dict[str, Any]] = []
    try:
        kind = await _column_type(conn)
        exact = await _exact(conn, name, part, kind, texts, vectors)
        stored = f"c.embedding <=> CAST($1 AS {kind.split('(')[0]})"
        for ef in efs:
            rows.append(await _leg_recall(conn, part, stored, ef, vectors, exact, index="stored"))
        probe_name = f"{part}_halfvec_probe"
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", probe_name):
            dim = len(vectors[0])
            distance = f"(c.embedding::halfvec({dim})) <=> CAST($1 AS halfvec({dim}))"
            try:
                for ef in efs:
                    rows.append(await _leg_recall(conn, part, distance, ef, vectors, exact, index="halfvec"))
            finally:
                # Measured once: dropped, so the server's run and the footprint see the schema's indexes.
                if drop_probe:
                    await conn.execute(f"DROP INDEX {probe_name}")
    finally:
        await conn.close()
    return rows


async def _exact(conn: Any, name: str, part: str, kind: str, texts: list[str], vectors: list[Any]) -> list[list[str]]:
    """Exact top-10 per query (cached per size): the same ORDER BY on a sequential scan."""
    cache = SCALE_DIR / f"exact-{name}.json"
    if cache.exists():
        got: dict[str, list[str]] = json.loads(cache.read_text())
        if all(t in got for t in texts):
            return [got[t] for t in texts]
    sql = f"SELECT c.id FROM {part} c ORDER BY c.embedding <=> CAST($1 AS {kind.split('(')[0]}) LIMIT 10"  # noqa: S608 (hex names)
    out = []
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_indexscan = off")
        await conn.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", vectors[0]))
        if "Index" in plan:
            raise RuntimeError(f"the exact query still uses an index:\n{plan}")
        for v in vectors:
            out.append([str(r[0]) for r in await conn.fetch(sql, v)])
    cache.write_text(json.dumps(dict(zip(texts, out, strict=True))) + "\n")
    return out


async def _leg_recall(
    conn: Any, part: str, distance: str, ef: int, vectors: list[Any], exact: list[list[str]], *, index: str
) -> dict[str, Any]:
    """The dense leg's shape (tenant predicate, LIMIT DEPTH), ef_search set per transaction."""
    sql = f"SELECT c.id, {distance} AS d FROM {part} c WHERE c.tenant_id = $2 ORDER BY {distance} LIMIT $3"  # noqa: S608
    stmt = await conn.prepare(sql)
    plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", vectors[0], TENANT, DEPTH))
    if "hnsw" not in plan.lower() and "Index Scan" not in plan:
        raise RuntimeError(f"the dense leg does not use the HNSW index:\n{plan}")
    # The exact 10th-nearest distance of each query: how far behind the missed neighbours are.
    tenth_sql = f"SELECT max({distance}) FROM {part} c WHERE c.id = ANY($2::uuid[])"  # noqa: S608
    tenth = [float(await conn.fetchval(tenth_sql, v, want)) for v, want in zip(vectors, exact, strict=True)]
    load_before = load_average()
    took: list[float] = []
    hits = near = 0
    gaps: list[float] = []
    for rnd in range(2):  # the first round warms the index pages; the second is measured
        took.clear()
        gaps.clear()
        hits = near = 0
        for v, want, d10 in zip(vectors, exact, tenth, strict=True):
            async with conn.transaction():
                await conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
                t0 = time.perf_counter()
                got = await stmt.fetch(v, TENANT, DEPTH)
                took.append((time.perf_counter() - t0) * 1000)
            ranked = sorted(got, key=lambda r: r[1])[:10]
            top = [str(r[0]) for r in ranked]
            hits += len(set(top) & set(want))
            near += sum(1 for r in ranked if r[1] <= d10 + NEAR_TIE)
            gaps.append(float(ranked[-1][1]) - d10)
        del rnd
    return {
        "index": index,
        "ef_search": ef,
        "recall_at_10": hits / (10 * len(vectors)),
        "near_recall_at_10": near / (10 * len(vectors)),
        "tenth_distance_gap": sum(gaps) / len(gaps),
        "p50_ms": percentile(took, 50),
        "p95_ms": percentile(took, 95),
        "loadavg": f"{load_before}->{load_average()}",
    }


async def _build_halfvec_probe(conn: Any, part: str, dim: int, mwm: str) -> dict[str, Any]:
    """An HNSW index over `embedding::halfvec(dim)` beside the stored one: its build time and
    size, and the bytes the column would take as halfvec. Queried by the measuring run, which
    drops it afterwards."""
    name = f"{part}_halfvec_probe"
    await conn.execute(f"DROP INDEX IF EXISTS {name}")
    await conn.execute(f"SET maintenance_work_mem = '{mwm}'")
    await conn.execute("SET max_parallel_maintenance_workers = 2")
    load_before = load_average()
    t0 = time.perf_counter()
    await conn.execute(f"CREATE INDEX {name} ON {part} USING hnsw ((embedding::halfvec({dim})) halfvec_cosine_ops)")
    build_s = time.perf_counter() - t0
    await conn.execute(f"ANALYZE {part}")
    size = await conn.fetchval("SELECT pg_relation_size($1::regclass)", name)
    f32, f16 = "sum(pg_column_size(embedding))::bigint", f"sum(pg_column_size(embedding::halfvec({dim})))::bigint"
    columns = f"SELECT {f32} AS f32, {f16} AS f16 FROM {part}"  # noqa: S608 (hex names)
    heap = await conn.fetchrow(columns)
    return {
        "build_s": build_s,
        "loadavg": f"{load_before}->{load_average()}",
        "index_mib": size / 2**20,
        "f32_mib": heap["f32"] / 2**20,
        "f16_mib": heap["f16"] / 2**20,
    }


def _load(bench: Bench, name: str, url: str, queries: list[str], args: Any) -> None:
    """embcached on a server with the result cache off; uncached on one with every cache off (as
    in `make bench`, bench/scenarios.py), where cycling the query texts still encodes each."""
    from bench.scenarios import NO_CACHES, _http

    auth = bench.auth(tenant=TENANT)
    repeated = queries[1050:1100]
    extra = {"RAGQL_SEARCH_CACHE_TTL_S": "0"}
    if args.ef_server:
        extra["RAGQL_HNSW_EF_SEARCH"] = str(args.ef_server)
    if args.workers:
        extra["RAGQL_WORKERS"] = str(args.workers)
    for scenario, env, pool in (
        ("search_hybrid_embcached", extra, repeated),
        ("search_hybrid_uncached", {**extra, **NO_CACHES}, queries),
    ):
        with Server(url, bench.secret, bench.workdir, env) as server:
            gql = f"{server.base}/graphql"
            warm = _http(gql, [search_body(q) for q in repeated], headers=auth, cycle=False, duration_s=60)
            bench.scenario("warmup", 1, warm, record=False)
            for conc in (1, 16):
                body = [search_body(q) for q in pool]
                bench.scenario(f"{scenario}@{name}", conc, _http(gql, body, headers=auth, duration_s=args.duration))


def _pg_memory_kib(pgdata: Path) -> tuple[int, int]:
    """RSS and PSS summed over the postmaster and its children (PSS shares shared_buffers out)."""
    from bench.scenarios import _tree

    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    rss = pss = 0
    for pid in _tree(postmaster):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "Rss":
                    rss += int(value.split()[0])
                elif key == "Pss":
                    pss += int(value.split()[0])
        except OSError:
            continue
    return rss, pss


async def _footprint(url: str, pgdata: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import asyncpg

    from domain.retrieval.tenant_index import chunk_partition

    part = chunk_partition(TENANT)
    conn = await asyncpg.connect(url)
    try:
        shared = await conn.fetchval("SHOW shared_buffers")
        heap = await conn.fetchval("SELECT pg_table_size($1::regclass)", part)
        idx = await conn.fetch(
            "SELECT c.relname, pg_relation_size(i.indexrelid) AS bytes FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass",
            part,
        )
        docs = await conn.fetchval("SELECT pg_total_relation_size('documents')")
    finally:
        await conn.close()
    rss, pss = _pg_memory_kib(pgdata)
    indexes = {}
    for r in idx:
        label = r["relname"].removeprefix(part + "_") or r["relname"]
        indexes[label] = r["bytes"] / 2**20
    disk = {"heap_mib": heap / 2**20, "indexes": indexes, "documents_total_mib": docs / 2**20}
    return {"shared_buffers": shared, "rss_mib": rss / 1024, "pss_mib": pss / 1024}, disk
