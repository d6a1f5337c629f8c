"""`ragql export-model`: run at install or image build so the first start loads the export instead of making it."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.core import out, settings


def export_model(
    ctx: typer.Context,
    all_backends: Annotated[
        bool, typer.Option("--all", help="every ONNX backend, not only RAGQL_EMBEDDING_BACKEND's")
    ] = False,
) -> None:
    """Export the local embedding model to ONNX into RAGQL_MODEL_CACHE_DIR."""
    from domain.providers.onnx_export import OnnxBackend, ensure_exported

    s = settings(ctx)
    backends: list[OnnxBackend] = ["onnx", "onnx-int8"] if all_backends else []
    if not backends:
        if s.embedding_backend == "torch":
            out().print("RAGQL_EMBEDDING_BACKEND=torch needs no export")
            return
        backends = [s.embedding_backend]
    for backend in backends:
        model = ensure_exported(s.model_cache_dir, backend)
        out().print(f"{backend}: {model.model_file}", markup=False)


def register(app: typer.Typer) -> None:
    app.command()(export_model)
