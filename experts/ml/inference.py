"""Inference backends for the frozen backbone's forward: torch float32/bfloat16, ONNX Runtime.

A backend trunk exposes `encode_batches(texts, spec)` exactly like `Backbone` (float32 pooled
states per layer, token states where the spec asks), so a Predictor can take either. Training
and validation keep encoding with the torch float32 backbone: those are the features the
experts were trained on. ONNX exports are written once per backbone fingerprint, backend and
opset under a cache folder, with torch's own exporter and onnxruntime's quantiser; nothing is
downloaded.
"""
from __future__ import annotations

import copy
import logging
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from experts.ml.backbone import Backbone
from experts.ml.trunk import LayeredBatch, TrunkSpec, mean_pool, surface_of

logger = logging.getLogger(__name__)

BACKENDS = ("torch-float32", "torch-bfloat16", "onnx-float32", "onnx-int8")
ONNX_OPSET = 17


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (library missing, export failed, unsupported CPU)."""


class _AllHiddenStates(nn.Module):
    """The encoder returning every layer's hidden states stacked: (L + 1, B, T, H)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # Explicit positions and segment ids: the traced graph must not bake in the example's
        # sequence length through the model's sliced buffers.
        positions = torch.cumsum(torch.ones_like(input_ids), dim=1) - 1  # (B, T)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=torch.zeros_like(input_ids), position_ids=positions,
                         output_hidden_states=True)
        return torch.stack(out.hidden_states)  # (L + 1, B, T, H)


def onnx_path(cache_dir: str | Path, backbone: Backbone, backend: str) -> Path:
    """Where the export of `backend` for this backbone lives (fingerprint + backend + opset)."""
    return (Path(cache_dir) / "onnx"
            / f"{backbone.fingerprint[:16]}-{backend}-opset{ONNX_OPSET}.onnx")


def _export_float32(backbone: Backbone, path: Path) -> None:
    model = _AllHiddenStates(copy.deepcopy(backbone.model).float().cpu()).eval()
    ids, mask = backbone.tokenizer(["an example", "a longer example text"], padding=True,
                                   return_tensors="pt", return_token_type_ids=False).values()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "hidden": {1: "batch", 2: "tokens"}}
    with warnings.catch_warnings():
        # The tracer's notes on shape checks it freezes: the mask path is traced with padding,
        # and the features are tested against torch's on other shapes.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, mask), str(tmp),
                          input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                          dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)
    tmp.replace(path)


def _ensure_export(backbone: Backbone, backend: str, cache_dir: str | Path) -> Path:
    path = onnx_path(cache_dir, backbone, backend)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    fp32 = onnx_path(cache_dir, backbone, "onnx-float32")
    if not fp32.exists():
        _export_float32(backbone, fp32)
    if backend == "onnx-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = path.with_suffix(f".tmp{os.getpid()}")
        # Per-channel weight scales and float embeddings (MatMuls only): per-tensor scales on
        # every op moved 6 % of the predictions of a production-like model.
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
        tmp.replace(path)
    logger.info("exported %s for %s in %.1fs", backend, backbone.name,
                time.perf_counter() - started)
    return path


class OnnxTrunk:
    """The backbone's forward through ONNX Runtime; everything else is the torch backbone's."""

    def __init__(self, backbone: Backbone, backend: str, *, cache_dir: str | Path,
                 threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"{backend}: onnxruntime is not installed") from exc
        if backend not in ("onnx-float32", "onnx-int8"):
            raise ValueError(f"not an ONNX backend: {backend!r}")
        try:
            path = _ensure_export(backbone, backend, cache_dir)
        except (ImportError, RuntimeError, OSError) as exc:
            raise BackendUnavailable(f"{backend}: export failed: {exc}") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts,
                                            providers=["CPUExecutionProvider"])
        self.backbone = backbone
        self.backend = backend

    def __getattr__(self, name: str):
        # tokenize, pad, fingerprint, cfg, ...: the torch backbone's (LoRA experts use it too)
        return getattr(self.backbone, name)

    # the same TrunkSet assembly as the torch backbone's, over this trunk's batches
    encode_set = Backbone.encode_set

    def encode_batches(
        self, texts: Sequence[str], spec: TrunkSpec, *, batch_size: int | None = None,
    ) -> Iterator[tuple[list[int], LayeredBatch]]:
        """What Backbone.encode_batches yields, from ONNX Runtime (token states float32)."""
        bb = self.backbone
        ids = bb.tokenize(texts)
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]), reverse=True)
        bs = batch_size or bb.cfg.batch_size
        for b in range(0, len(order), bs):
            idx = order[b : b + bs]
            input_ids, mask = bb.pad([ids[i] for i in idx])
            hidden = torch.from_numpy(self.session.run(None, {
                "input_ids": input_ids.cpu().numpy(),
                "attention_mask": mask.cpu().numpy()})[0])  # (L + 1, B, T, H)
            pooled = {layer: mean_pool(hidden[layer], mask).to(bb.device)
                      for layer in spec.all_pooled}
            states = {layer: hidden[layer].to(bb.device) for layer in spec.tokens}
            keep_mask = bool(states) or spec.ids
            yield idx, LayeredBatch(pooled=pooled, hidden=states,
                                    mask=mask if keep_mask else None,
                                    input_ids=input_ids if spec.ids else None,
                                    surface=surface_of([texts[i] for i in idx], spec))


def cpu_info() -> dict:
    """Model name and the SIMD flags that decide CPU inference speed, from /proc/cpuinfo."""
    model, flags = "unknown", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    return {"model": model, "flags": [f for f in wanted if f in flags]}


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def candidate_backends(*, bf16_fast: bool) -> list[str]:
    """The backends worth measuring here, float32 first (the reference)."""
    out = ["torch-float32"]
    if bf16_fast:  # without AMX or AVX-512 BF16, bfloat16 is slower than float32 on CPU
        out.append("torch-bfloat16")
    if onnx_available():
        out += ["onnx-float32", "onnx-int8"]
    return out


# Backends whose features are the float32 ones the experts are trained on (ONNX Runtime's
# float32 graph is within 1e-4 of torch's on the tiny model, 1e-5 on MiniLM), so training,
# validation and evaluation may encode with them; bfloat16 and int8 are serving-only.
ENCODE_BACKENDS = ("torch-float32", "onnx-float32")


def encode_backend_name(configured: str, backbone: Backbone) -> str:
    """The encoding backend `configured` ("auto" or one of ENCODE_BACKENDS) means here: auto is
    ONNX Runtime float32 on a CPU where onnxruntime is installed, torch float32 otherwise."""
    if configured == "auto":
        return ("onnx-float32" if backbone.device.type == "cpu" and onnx_available()
                else "torch-float32")
    if configured not in ENCODE_BACKENDS:
        raise ValueError(f"the encoding backend must be auto or one of "
                         f"{', '.join(ENCODE_BACKENDS)} (bfloat16 and int8 change the features "
                         f"the experts learn from), got {configured!r}")
    return configured


def open_encoder(backbone: Backbone, configured: str, *, cache_dir: str | Path,
                 threads: int = 1):
    """The trunk that encodes features for training and validation, with its `backend` name;
    torch float32 (with a warning) when the configured one cannot run here."""
    name = encode_backend_name(configured, backbone)
    if name == "torch-float32":
        return backbone
    try:
        return open_backend(backbone, name, cache_dir=cache_dir, threads=threads)
    except BackendUnavailable as exc:
        logger.warning("encoding with torch-float32: %s", exc)
        return backbone


def open_backend(backbone: Backbone, backend: str, *, cache_dir: str | Path,
                 threads: int = 1):
    """An object with Backbone's encode_batches running `backend`; the float32 torch backbone
    itself for torch-float32. Raises BackendUnavailable when it cannot run here."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch-float32":
        return backbone
    if backend == "torch-bfloat16":
        if backbone.device.type != "cpu":
            raise BackendUnavailable("torch-bfloat16 is a CPU backend")
        trunk = copy.copy(backbone)  # the float32 backbone stays as it is for LoRA experts
        trunk.model = copy.deepcopy(backbone.model).to(dtype=torch.bfloat16)
        trunk.dtype = torch.bfloat16
        trunk.backend = backend
        return trunk
    return OnnxTrunk(backbone, backend, cache_dir=cache_dir, threads=threads)
