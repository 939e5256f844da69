"""Expert artifacts (manifest.json + weights.safetensors): save, strict inspection, safe loading."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from experts.ml.common import atomic_write_bytes
from experts.ml.manifest import (
    ALLOWED_DTYPES,
    FORMAT_VERSION,
    build_manifest,
    expert_config_from_manifest,
    validate_manifest,
)
from experts.ml.modules import TrunkBatch, build_expert
from experts.ml.safetensors_header import HeaderError, TensorInfo, parse_safetensors_header

if TYPE_CHECKING:
    from experts.ml.backbone import Backbone

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "weights.safetensors"
MiB = 1024 * 1024
DEFAULT_MAX_BYTES = 200 * MiB  # weights file cap
MAX_MANIFEST_BYTES = 1 * MiB


class ArtifactError(ValueError):
    """An expert artifact is malformed, unsafe or incompatible; the message says exactly why."""


@dataclass
class Check:
    """Outcome of one artifact check."""

    name: str
    ok: bool
    message: str


def _expected_tensors(manifest: dict) -> dict[str, list[int]]:
    """Tensor name -> shape of the module the manifest describes, built on the meta device."""
    with torch.device("meta"):
        module = build_expert(expert_config_from_manifest(manifest))
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def _resolve(manifest: Any, weights: Any) -> tuple[Any, Any]:
    if weights is None and isinstance(manifest, (str, Path)) and Path(manifest).is_dir():
        return Path(manifest) / MANIFEST_NAME, Path(manifest) / WEIGHTS_NAME
    return manifest, weights


def _read_capped(src: bytes | str | Path, cap: int, what: str) -> bytes:
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    else:
        path = Path(src)
        if not path.is_file():
            raise ArtifactError(f"{what} not found: {path}")
        size = path.stat().st_size
        if size > cap:  # never read an oversized upload into memory
            raise ArtifactError(_too_big(what, size, cap))
        data = path.read_bytes()
    if len(data) > cap:
        raise ArtifactError(_too_big(what, len(data), cap))
    return data


def _too_big(what: str, size: int, cap: int) -> str:
    return f"{what} is {size / MiB:.1f} MiB, over the {cap / MiB:.1f} MiB limit"


class _Inspection:
    """Runs the artifact checks in order, keeping what each one established for the next."""

    def __init__(
        self, manifest_src: Any, weights_src: Any, fingerprint: str | None, max_bytes: int
    ) -> None:
        self.src = _resolve(manifest_src, weights_src)
        self.fingerprint = fingerprint
        self.max_bytes = max_bytes
        self.manifest: dict | None = None
        self.infos: dict[str, TensorInfo] | None = None
        self.tensors: dict[str, torch.Tensor] | None = None
        self.module: nn.Module | None = None

    def run(self) -> Iterator[Check]:
        passed: set[str] = set()
        steps = [
            ("file sizes", (), self.check_sizes),
            ("manifest json", ("file sizes",), self.check_json),
            ("manifest schema", ("manifest json",), self.check_schema),
            ("backbone", ("manifest schema",), self.check_backbone),
            ("safetensors header", ("file sizes",), self.check_header),
            ("tensors match manifest", ("manifest schema", "safetensors header"), self.check_names),
            ("tensors match architecture", ("tensors match manifest",), self.check_architecture),
            ("finite values", ("safetensors header",), self.check_finite),
        ]
        # The final load needs everything before it to have passed.
        steps.append(("loads and runs", tuple(name for name, _, _ in steps), self.check_load))
        for name, deps, fn in steps:
            blocked = [d for d in deps if d not in passed]
            if blocked:
                yield Check(name, False, f"not run: needs {', '.join(blocked)} to pass")
                continue
            try:
                message = fn()
            except ArtifactError as exc:
                yield Check(name, False, str(exc))
                continue
            passed.add(name)
            yield Check(name, True, message)

    def check_sizes(self) -> str:
        manifest_src, weights_src = self.src
        if weights_src is None:
            raise ArtifactError("no weights file given")
        self.manifest_bytes = _read_capped(manifest_src, MAX_MANIFEST_BYTES, "manifest")
        self.weights_bytes = _read_capped(weights_src, self.max_bytes, "weights file")
        weights_mib = len(self.weights_bytes) / MiB
        return f"manifest {len(self.manifest_bytes)} B, weights {weights_mib:.2f} MiB"

    def check_json(self) -> str:
        try:
            self.manifest = json.loads(self.manifest_bytes.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"manifest is not valid UTF-8 JSON: {exc}") from None
        return "parsed"

    def check_schema(self) -> str:
        errors = validate_manifest(self.manifest)
        if errors:
            raise ArtifactError("; ".join(errors))
        m = self.manifest
        return f"format_version {FORMAT_VERSION}, {m['kind']} expert for {m['domain']!r}"

    def check_backbone(self) -> str:
        fp = self.manifest["backbone"]["fingerprint"]
        if self.fingerprint is None:
            return f"built on {fp[:12]}… (no platform fingerprint given, not compared)"
        if fp != self.fingerprint:
            raise ArtifactError(f"built on backbone {fp}, this platform runs {self.fingerprint}")
        return f"matches platform backbone {fp[:12]}…"

    def check_header(self) -> str:
        try:
            self.infos = parse_safetensors_header(self.weights_bytes, allowed=ALLOWED_DTYPES)
        except HeaderError as exc:
            raise ArtifactError(str(exc)) from None
        return f"{len(self.infos)} tensors, layout valid"

    def check_names(self) -> str:
        listed = self.manifest["tensors"]
        for name in self.infos:
            if name not in listed:
                raise ArtifactError(
                    f"unknown tensor {name!r}: in the weights file but not in manifest.tensors"
                )
        for name, spec in listed.items():
            info = self.infos.get(name)
            if info is None:
                raise ArtifactError(
                    f"missing tensor {name!r}: listed in manifest.tensors, not in the weights file"
                )
            if info.dtype != spec["dtype"]:
                raise ArtifactError(
                    f"tensor {name!r} is {info.dtype} in the weights file "
                    f"but {spec['dtype']} in the manifest"
                )
            if info.shape != spec["shape"]:
                raise ArtifactError(
                    f"tensor {name!r} has shape {info.shape} in the weights file "
                    f"but {spec['shape']} in the manifest"
                )
        return f"{len(listed)} tensors, names, dtypes and shapes agree"

    def check_architecture(self) -> str:
        expected = _expected_tensors(self.manifest)
        arch = self.manifest["architecture"]
        n_labels = len(self.manifest["labels"])
        desc = f"{self.manifest['kind']} expert, {n_labels} labels, mlp_hidden {arch['mlp_hidden']}"
        for name, info in self.infos.items():
            if name not in expected:
                raise ArtifactError(
                    f"unknown tensor {name!r}: the described architecture ({desc}) "
                    "has no such tensor"
                )
            if info.shape != expected[name]:
                raise ArtifactError(
                    f"tensor {name!r} has shape {info.shape} but the described architecture "
                    f"({desc}) needs {expected[name]}"
                )
        for name in expected:
            if name not in self.infos:
                raise ArtifactError(
                    f"missing tensor {name!r}: the described architecture ({desc}) needs it"
                )
        return desc

    def check_finite(self) -> str:
        try:
            self.tensors = load_safetensors_bytes(self.weights_bytes)
        except SafetensorError as exc:
            raise ArtifactError(f"weights file could not be read: {exc}") from None
        for name, t in self.tensors.items():
            if torch.isnan(t).any():
                raise ArtifactError(f"tensor {name!r} contains NaN")
            if torch.isinf(t).any():
                raise ArtifactError(f"tensor {name!r} contains Inf")
        return "no NaN or Inf"

    def check_load(self) -> str:
        module = build_expert(expert_config_from_manifest(self.manifest))
        state = {k: v.to(torch.float32) for k, v in self.tensors.items()}
        module.load_state_dict(state, strict=True)
        module.eval()
        trunk = _dummy_trunk(self.manifest["backbone"]["hidden_size"])
        with torch.inference_mode():
            logits = module(trunk)
        n_labels = len(self.manifest["labels"])
        if tuple(logits.shape) != (2, n_labels) or not torch.isfinite(logits).all():
            raise ArtifactError(
                f"expert produced invalid logits of shape {list(logits.shape)} on a test input"
            )
        self.module = module
        return f"forward pass gives logits over {logits.shape[1]} labels"


def _dummy_trunk(hidden_size: int) -> TrunkBatch:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn((2, 4, hidden_size), generator=gen)  # (B, T, H)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])  # (B, T)
    return TrunkBatch(pooled=hidden.mean(dim=1), hidden=hidden, mask=mask)


def inspect_artifact(
    manifest: bytes | str | Path, weights: bytes | str | Path | None = None, *,
    expected_fingerprint: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[Check]:
    """Run every check on an artifact (a directory, or manifest + weights) and report each."""
    return list(_Inspection(manifest, weights, expected_fingerprint, max_bytes).run())


def load_expert(
    manifest: bytes | str | Path, weights: bytes | str | Path | None = None, *,
    expected_fingerprint: str | None, max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[nn.Module, dict]:
    """Validate and load an artifact without unpickling anything; raises ArtifactError."""
    inspection = _Inspection(manifest, weights, expected_fingerprint, max_bytes)
    for check in inspection.run():
        if not check.ok:
            raise ArtifactError(check.message)
    return inspection.module, inspection.manifest


def save_expert(
    expert: nn.Module, out_dir: str | Path, *, backbone: Backbone, training: dict,
    metrics: dict, extra: dict | None = None,
) -> Path:
    """Write manifest.json + weights.safetensors into out_dir (validated first, atomic per file)."""
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in expert.state_dict().items()
    }
    manifest = build_manifest(
        expert, tensors, backbone=backbone, training=training, metrics=metrics, extra=extra
    )
    errors = validate_manifest(json.loads(json.dumps(manifest)))
    if errors:
        raise ArtifactError("; ".join(errors))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payloads = {
        WEIGHTS_NAME: save_safetensors_bytes(tensors, metadata={"format": "pt"}),
        MANIFEST_NAME: (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
    }
    for name, payload in payloads.items():  # weights first: a manifest never points at nothing
        atomic_write_bytes(out / name, payload)
    logger.info("saved %s expert for %s to %s", manifest["kind"], manifest["domain"], out)
    return out
