"""Expert artifacts (manifest.json + weights.safetensors): save, strict inspection, safe loading."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from experts.ml.common import atomic_write_bytes
from experts.ml.manifest import build_manifest, expert_config_from_manifest, validate_manifest
from experts.ml.modules import TrunkBatch, build_expert

# The checks themselves live in upload_checks (no torch): the web process and the command line
# run them as they are, and this module adds the one that builds and runs the expert.
from experts.ml.upload_checks import (  # noqa: F401 - re-exported for the callers of this module
    DEFAULT_MAX_BYTES,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    WEIGHTS_NAME,
    ArtifactError,
    Check,
    MiB,
    Step,
    UploadInspection,
    platform_mismatches,
)

if TYPE_CHECKING:
    from experts.ml.backbone import Backbone

logger = logging.getLogger(__name__)


class _Inspection(UploadInspection):
    """The upload checks, then the expert built from the manifest alone and run once.

    A LoRA expert is built on the backbone (its adapter joins `bank`, or a new bank).
    """

    module: nn.Module | None = None
    backbone: Backbone | None = None
    bank = None

    def steps(self) -> list[Step]:
        steps = super().steps()
        # The final load needs everything before it to have passed.
        return [*steps, ("loads and runs", tuple(name for name, _, _ in steps), self.check_load)]

    def check_load(self) -> str:
        try:
            tensors = load_safetensors_bytes(self.weights_bytes)
        except SafetensorError as exc:
            raise ArtifactError(f"weights file could not be read: {exc}") from None
        state = {k: v.to(torch.float32) for k, v in tensors.items()}
        if self.manifest["kind"] == "lora":
            module, trunk = self._load_lora(state)
        else:
            module = build_expert(expert_config_from_manifest(self.manifest))
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


    def _load_lora(self, state: dict[str, torch.Tensor]) -> tuple[nn.Module, TrunkBatch]:
        from experts.ml.lora import lora_expert_from_state

        if self.backbone is None:
            raise ArtifactError("running a LoRA expert needs the platform's backbone")
        m = self.manifest
        module = lora_expert_from_state(m["architecture"]["adapter_config"], state,
                                        backbone=self.backbone, domain=m["domain"],
                                        labels=m["labels"], bank=self.bank)
        input_ids, mask = self.backbone.pad(self.backbone.tokenize(["a test input", "hello"]))
        return module, TrunkBatch(pooled=torch.zeros(2, self.backbone.hidden_size),
                                  mask=mask, input_ids=input_ids)


def _dummy_trunk(hidden_size: int) -> TrunkBatch:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn((2, 4, hidden_size), generator=gen)  # (B, T, H)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])  # (B, T)
    return TrunkBatch(pooled=hidden.mean(dim=1), hidden=hidden, mask=mask)


def inspect_and_load(
    manifest: bytes | str | Path, weights: bytes | str | Path | None = None, *,
    expected_fingerprint: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
    platform: dict | None = None, backbone: Backbone | None = None, bank=None,
) -> tuple[list[Check], nn.Module | None, dict | None]:
    """(every check, the expert the last check built and ran or None, the manifest).

    `platform` (describe_backbone()) also compares the layers, width and layer config the
    manifest states; its fingerprint is used when expected_fingerprint is not given. LoRA
    experts need `backbone`; those loaded with the same `bank` run in one forward.
    """
    if expected_fingerprint is None and platform is not None:
        expected_fingerprint = platform["fingerprint"]
    inspection = _Inspection(manifest, weights, expected_fingerprint, max_bytes, platform)
    inspection.backbone, inspection.bank = backbone, bank
    checks = list(inspection.run())
    return checks, inspection.module, inspection.manifest


def inspect_artifact(manifest: bytes | str | Path, weights: bytes | str | Path | None = None,
                     **kwargs) -> list[Check]:
    """Run every check on an artifact (a directory, or manifest + weights) and report each."""
    return inspect_and_load(manifest, weights, **kwargs)[0]


def load_expert(
    manifest: bytes | str | Path, weights: bytes | str | Path | None = None, *,
    expected_fingerprint: str | None, max_bytes: int = DEFAULT_MAX_BYTES,
    backbone: Backbone | None = None, bank=None,
) -> tuple[nn.Module, dict]:
    """Validate and load an artifact without unpickling anything; raises ArtifactError."""
    checks, module, found = inspect_and_load(
        manifest, weights, expected_fingerprint=expected_fingerprint, max_bytes=max_bytes,
        backbone=backbone, bank=bank)
    failed = next((c for c in checks if not c.ok), None)
    if failed is not None:
        raise ArtifactError(failed.message)
    return module, found


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
