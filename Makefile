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

.PHONY: install run test lint typecheck pytest eval eval-train eval-recs bench bench-streams migrate clean

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

pytest: install
	@$(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; \
	exit $$rc

test: lint typecheck pytest

eval: install
	$(BIN)/ragql eval --split test

eval-train: install
	$(BIN)/ragql eval --split train --sweep

# Simulated users through the GraphQL API: hit@10 and nDCG@10 per recommendation strategy.
eval-recs: install
	$(BIN)/ragql eval-recs

bench: install
	$(BIN)/ragql bench

# 200 concurrent answerStream subscriptions against a real server process (takes about a minute).
bench-streams: install
	$(BIN)/ragql bench --streams 200

clean:
	rm -rf $(VENV) .ragql-runtime .mypy_cache .ruff_cache .pytest_cache
