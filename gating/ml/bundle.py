"""A gating model and its bundle: one platform-written safetensors file.

The bundle holds the router, the same router trained without regularisation (for comparison)
and every expert's weights, with the configs in its metadata. Workers write it after loading
the experts' validated artifacts; the web process only ever opens bundles, never an upload.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from experts.ml.common import atomic_write_bytes
from experts.ml.modules import ExpertConfig, build_expert
from experts.ml.safetensors_header import HeaderError, header_metadata, parse_safetensors_header
from experts.ml.trunk import TrunkSpec, needs_ids
from gating.ml.moe import LabelSpace, MixtureOfExperts
from gating.ml.router import Router, RouterConfig

BUNDLE_FORMAT = 2  # 2: experts tap their own split layers, the router reads input_layers
MAX_BUNDLE_BYTES = 2 * 1024**3
MAX_BUNDLE_HEADER_BYTES = 16 * 1024 * 1024  # configs of every expert + tensor table


class GatingError(ValueError):
    """Experts, data or a bundle cannot form a gating model; the message says why."""


@dataclass
class GatingModel:
    """A loaded mixture: experts (router order), their keys, the routers and the label space."""

    moe: MixtureOfExperts  # with the regularised router
    keys: list[str]  # expert keys in router order (the platform's expert-version ids)
    fingerprint: str  # backbone the experts were trained on
    unregularized: Router | None = None  # same router trained with lambda_bal = lambda_h = 0
    config: dict = field(default_factory=dict)  # GatingTrainConfig as a dict

    @property
    def spec(self) -> TrunkSpec:
        """The trunk this model reads: each expert's split layer, the router's layers and
        (surface routers) the texts' surface features."""
        router = self.moe.router.config
        return TrunkSpec.for_experts(self.moe.experts, router_layers=router.input_layers,
                                     router_surface=router.surface_buckets,
                                     router_surface_version=router.surface_version)

    @property
    def needs_tokens(self) -> bool:
        return bool(self.spec.tokens)


def bundle_bytes(model: GatingModel) -> bytes:
    """The safetensors bytes of a gating model (float32 tensors, configs in the metadata)."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.moe.router.state_dict().items():
        tensors[f"router.{k}"] = v
    if model.unregularized is not None:
        for k, v in model.unregularized.state_dict().items():
            tensors[f"unregularized.{k}"] = v
    for i, expert in enumerate(model.moe.experts):
        for k, v in expert.state_dict().items():
            tensors[f"experts.{i}.{k}"] = v
        if needs_ids(expert):  # a LoRA expert's adapter lives in its bank
            for k, v in expert.bank.adapter_state(expert.key).items():
                tensors[f"experts.{i}.adapter.{k}"] = v
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}
    spec = model.spec
    meta = {
        "format": BUNDLE_FORMAT,
        "router": model.moe.router.config.to_dict(),
        "experts": [asdict(e.config) for e in model.moe.experts],
        "keys": model.keys,
        "label_space": list(model.moe.label_space.names),
        "trunk": {"pooled": list(spec.pooled), "tokens": list(spec.tokens)},  # for readers
        "fingerprint": model.fingerprint,
        "has_unregularized": model.unregularized is not None,
        "config": model.config,
    }
    return save_safetensors_bytes(tensors, metadata={"gating": json.dumps(meta)})


def save_bundle(model: GatingModel, path: str | Path) -> str:
    """Write the bundle atomically; returns its sha256."""
    data = bundle_bytes(model)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _meta(data: bytes, path: Path) -> dict:
    try:
        parse_safetensors_header(data, max_header=MAX_BUNDLE_HEADER_BYTES, allowed=("F32",))
        meta = json.loads(header_metadata(data, max_header=MAX_BUNDLE_HEADER_BYTES)
                          .get("gating", "null"))
    except (HeaderError, json.JSONDecodeError) as exc:
        raise GatingError(f"{path} is not a readable gating bundle: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") not in (1, BUNDLE_FORMAT):
        raise GatingError(f"{path} is not a gating bundle of format {BUNDLE_FORMAT}")
    if meta["format"] == 1:
        # Format 1 had one split layer shared by every expert and read by the router.
        meta["router"] = {**meta["router"], "input_layers": [meta["split_layer"]]}
    # Routers written before surface feature versions existed hashed version 1's features.
    meta["router"] = {"surface_version": 1, **meta["router"]}
    return meta


def load_bundle(path: str | Path, *, expected_fingerprint: str | None = None,
                backbone=None) -> GatingModel:
    """Rebuild a gating model from a platform-written bundle (safetensors, nothing unpickled).

    A bundle with LoRA experts needs the backbone: their adapters run on a copy of it.
    """
    path = Path(path)
    if path.stat().st_size > MAX_BUNDLE_BYTES:
        raise GatingError(f"gating bundle {path} is larger than {MAX_BUNDLE_BYTES} bytes")
    data = path.read_bytes()
    meta = _meta(data, path)
    if expected_fingerprint is not None and meta["fingerprint"] != expected_fingerprint:
        raise GatingError(f"bundle built on backbone {meta['fingerprint']}, "
                          f"this process runs {expected_fingerprint}")
    tensors = load_safetensors_bytes(data)

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    def router(prefix: str) -> Router:
        module = Router(RouterConfig(**meta["router"]))
        module.load_state_dict(part(prefix), strict=True)
        return module.eval()

    experts: list[nn.Module] = []
    bank = None
    for i, cfg in enumerate(meta["experts"]):
        if cfg["kind"] == "lora":
            if backbone is None:
                raise GatingError(f"{path} holds LoRA experts: loading it needs the backbone")
            from experts.ml.lora import LoraBank, lora_expert_from_state

            bank = bank or LoraBank(backbone)
            state = {f"base_model.model.classifier.{k}": v
                     for k, v in part(f"experts.{i}.classifier.").items()}
            state.update(part(f"experts.{i}.adapter."))
            experts.append(lora_expert_from_state(
                cfg["lora"], state, backbone=backbone, domain=cfg["domain"],
                labels=cfg["labels"], key=f"e{i}", bank=bank))
            continue
        expert = build_expert(ExpertConfig(**cfg))
        expert.load_state_dict(part(f"experts.{i}."), strict=True)
        experts.append(expert.eval().requires_grad_(False))
    space = LabelSpace(tuple(meta["label_space"]))
    moe = MixtureOfExperts(router("router."), experts, space).eval()
    return GatingModel(
        moe=moe, keys=list(meta["keys"]), fingerprint=meta["fingerprint"],
        unregularized=router("unregularized.") if meta["has_unregularized"] else None,
        config=meta.get("config", {}),
    )
