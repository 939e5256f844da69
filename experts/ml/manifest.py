"""Strict schema of an expert's manifest.json, in plain Python so each message names its field.

No torch here: the upload checks (upload_checks.py) run this schema in the web process and in the
contributor's command line, where torch is not installed.
"""
from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from experts.ml.architecture import (
    EXPERT_KINDS,
    HIDDEN_ACTS,
    LAYER_CONFIG_KEYS,
    LAYER_MODEL_TYPES,
    ExpertConfig,
)
from experts.ml.safetensors_header import FLOAT_DTYPES

if TYPE_CHECKING:
    import torch
    from torch import nn

    from experts.ml.backbone import Backbone

FORMAT_VERSION = 1
ALLOWED_DTYPES = FLOAT_DTYPES  # floating weights only: nothing else has a use here
_TORCH_TO_ST = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16"}
MAX_LABELS = 1000
MAX_TEXT = 10_000  # characters in free-text fields (description)
_DOMAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")
_TOP_LEVEL = {
    "format_version", "kind", "domain", "labels", "backbone", "split_layer", "architecture",
    "tensors", "training", "metrics", "name", "description", "license",
}
_OPTIONAL = {"name", "description", "license"}
# (key, upper bound) of integer layer fields; the bounds keep a hostile manifest from
# asking a worker to allocate absurd modules before the weights are even compared.
_LAYER_INTS = {"hidden_size": 8192, "num_attention_heads": 256, "intermediate_size": 65536}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    """A finite JSON number that converts to float (a 400-digit integer does not)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def _brief(x: Any, limit: int = 60) -> str:
    """A manifest value for a message: short whatever the upload holds."""
    text = repr(x)
    return text if len(text) <= limit else text[:limit] + "…"


def _check_layer_config(lc: Any, hidden_size: Any, errors: list[str]) -> None:
    where = "manifest.architecture.layer_config"
    if not isinstance(lc, dict):
        errors.append(f"{where} must be an object (branch experts rebuild their layers from it)")
        return
    if set(lc) != set(LAYER_CONFIG_KEYS):
        errors.append(f"{where} must have exactly the keys {', '.join(LAYER_CONFIG_KEYS)}")
        return
    # isinstance first: a list or an object is unhashable, and these are dict lookups.
    if not isinstance(lc["model_type"], str) or lc["model_type"] not in LAYER_MODEL_TYPES:
        errors.append(f"{where}.model_type must be one of {', '.join(LAYER_MODEL_TYPES)}")
    for key, bound in _LAYER_INTS.items():
        if not _is_int(lc[key]) or not 1 <= lc[key] <= bound:
            errors.append(f"{where}.{key} must be an integer in 1..{bound}")
    if lc["hidden_size"] != hidden_size:
        errors.append(f"{where}.hidden_size must equal manifest.backbone.hidden_size")
    if _is_int(lc["hidden_size"]) and _is_int(lc["num_attention_heads"]) and lc[
        "num_attention_heads"
    ] > 0 and lc["hidden_size"] % lc["num_attention_heads"]:
        errors.append(f"{where}.num_attention_heads must divide hidden_size")
    if not isinstance(lc["hidden_act"], str) or lc["hidden_act"] not in HIDDEN_ACTS:
        errors.append(f"{where}.hidden_act must be a known activation name")
    for key in ("layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob"):
        if not _is_number(lc[key]) or not 0 <= lc[key] < 1:
            errors.append(f"{where}.{key} must be a number in [0, 1)")


def _check_lora_architecture(m: dict, arch: dict, errors: list[str]) -> None:
    """A LoRA expert's architecture is its adapter_config.json, checked as PEFT defines it."""
    from experts.ml.lora_config import check_adapter_config

    for key in sorted(set(arch) - {"adapter_config"}):
        errors.append(f"manifest.architecture has unknown field {key!r}")
    bb = m.get("backbone")
    n_layers = bb.get("num_layers") if isinstance(bb, dict) else None
    if not (_is_int(n_layers) and 1 <= n_layers <= 256):
        return  # reported by the backbone check
    if m.get("split_layer") != n_layers:
        errors.append(f"manifest.split_layer must be backbone.num_layers ({n_layers}) for a LoRA "
                      "expert: it adapts the whole backbone")
    errors.extend(check_adapter_config(arch.get("adapter_config"), num_layers=n_layers))


def _check_architecture(m: dict, errors: list[str]) -> None:
    arch = m.get("architecture")
    if arch is None:
        return  # reported as required
    if not isinstance(arch, dict):
        errors.append("manifest.architecture must be an object")
        return
    if m.get("kind") == "lora":
        _check_lora_architecture(m, arch, errors)
        return
    allowed = {"mlp_hidden", "n_branch_layers", "dropout", "layer_config"}
    for key in sorted(set(arch) - allowed):
        errors.append(f"manifest.architecture has unknown field {key!r}")
    if not _is_int(arch.get("mlp_hidden")) or not 1 <= arch["mlp_hidden"] <= 65536:
        errors.append("manifest.architecture.mlp_hidden must be an integer in 1..65536")
    if not _is_number(arch.get("dropout")) or not 0 <= arch["dropout"] < 1:
        errors.append("manifest.architecture.dropout must be a number in [0, 1)")
    nbl = arch.get("n_branch_layers")
    if not _is_int(nbl) or not 0 <= nbl <= 64:
        errors.append("manifest.architecture.n_branch_layers must be an integer in 0..64")
        return
    bb, split = m.get("backbone"), m.get("split_layer")
    n_layers = bb.get("num_layers") if isinstance(bb, dict) else None
    if m.get("kind") == "head":
        if nbl != 0:
            errors.append("manifest.architecture.n_branch_layers must be 0 for a head expert")
        if "layer_config" in arch:
            errors.append("manifest.architecture.layer_config is only for branch experts")
    elif m.get("kind") == "branch":
        # Only with both in range (reported otherwise): the difference of two 4,300-digit
        # integers has more digits than str() converts.
        in_range = _is_int(n_layers) and 1 <= n_layers <= 256 and _is_int(split) and split >= 0
        if in_range and nbl != n_layers - split:
            errors.append(
                "manifest.architecture.n_branch_layers must equal backbone.num_layers - split_layer"
                f" ({n_layers} - {split} = {n_layers - split}), got {nbl}"
            )
        if nbl < 1:
            errors.append("manifest.architecture.n_branch_layers must be at least 1 for a branch")
        hidden = bb.get("hidden_size") if isinstance(bb, dict) else None
        _check_layer_config(arch.get("layer_config"), hidden, errors)


def _check_backbone(m: dict, errors: list[str]) -> None:
    bb = m.get("backbone")
    if bb is None:
        return  # reported as required
    if not isinstance(bb, dict):
        errors.append(
            "manifest.backbone must be an object with name, fingerprint, num_layers, hidden_size"
        )
        return
    for key in sorted(set(bb) - {"name", "fingerprint", "num_layers", "hidden_size"}):
        errors.append(f"manifest.backbone has unknown field {key!r}")
    if not isinstance(bb.get("name"), str) or not 0 < len(bb["name"]) <= 200:
        errors.append("manifest.backbone.name must be a non-empty string")
    if not isinstance(bb.get("fingerprint"), str) or not _FINGERPRINT_RE.match(bb["fingerprint"]):
        errors.append("manifest.backbone.fingerprint must be 64 lowercase hex characters (sha256)")
    if not _is_int(bb.get("num_layers")) or not 1 <= bb["num_layers"] <= 256:
        errors.append("manifest.backbone.num_layers must be an integer in 1..256")
    if not _is_int(bb.get("hidden_size")) or not 1 <= bb["hidden_size"] <= 8192:
        errors.append("manifest.backbone.hidden_size must be an integer in 1..8192")


def _check_tensors(m: dict, errors: list[str]) -> None:
    tensors = m.get("tensors")
    if tensors is None:
        return  # reported as required
    if not isinstance(tensors, dict) or not tensors:
        errors.append("manifest.tensors must be a non-empty object {name: {dtype, shape}}")
        return
    for name, spec in tensors.items():
        where = f"manifest.tensors[{name!r}]"
        if not name or len(name) > 300:
            errors.append(f"{where}: tensor names must be 1..300 characters")
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape"}:
            errors.append(f"{where} must be an object with exactly dtype and shape")
            continue
        if spec["dtype"] not in ALLOWED_DTYPES:
            errors.append(f"{where}.dtype must be one of {', '.join(ALLOWED_DTYPES)}")
        shape = spec["shape"]
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            errors.append(f"{where}.shape must be a list of non-negative integers")


def validate_manifest(m: Any) -> list[str]:
    """Every schema violation in a parsed manifest, as messages naming the field; [] if valid."""
    if not isinstance(m, dict):
        return ["manifest must be a JSON object"]
    errors: list[str] = []
    for key in sorted(set(m) - _TOP_LEVEL):
        errors.append(f"manifest has unknown field {key!r}")
    for key in sorted(_TOP_LEVEL - _OPTIONAL - set(m)):
        errors.append(f"manifest.{key} is required")
    version = m.get("format_version")
    if "format_version" in m and (not _is_int(version) or version != FORMAT_VERSION):
        errors.append(f"manifest.format_version must be {FORMAT_VERSION}, got {_brief(version)}")
    if "kind" in m and m["kind"] not in EXPERT_KINDS:
        errors.append(
            f"manifest.kind must be one of {', '.join(EXPERT_KINDS)}, got {_brief(m['kind'])}"
        )
    if "domain" in m and (not isinstance(m["domain"], str) or not _DOMAIN_RE.match(m["domain"])):
        errors.append(
            "manifest.domain must be 1..64 characters of letters, digits, '_', '.', '-' "
            "starting with a letter or digit"
        )
    labels = m.get("labels")
    if "labels" in m and (
        not isinstance(labels, list) or len(labels) < 2 or len(labels) > MAX_LABELS
        or not all(isinstance(x, str) and 0 < len(x) <= 200 for x in labels)
        or len(set(labels)) != len(labels)
    ):
        errors.append(
            f"manifest.labels must be a non-empty list of distinct strings (2..{MAX_LABELS} "
            "labels, each 1..200 characters)"
        )
    _check_backbone(m, errors)
    split, bb = m.get("split_layer"), m.get("backbone")
    n_layers = bb.get("num_layers") if isinstance(bb, dict) else None
    if "split_layer" in m and (not _is_int(split) or split < 0):
        errors.append("manifest.split_layer must be a non-negative integer")
    elif _is_int(split) and _is_int(n_layers) and 1 <= n_layers <= 256 and split > n_layers:
        errors.append(f"manifest.split_layer must be at most backbone.num_layers ({n_layers})")
    _check_architecture(m, errors)
    _check_tensors(m, errors)
    if "training" in m and not isinstance(m["training"], dict):
        errors.append("manifest.training must be an object (provenance: data, epochs, seed, ...)")
    metrics = m.get("metrics")
    if "metrics" in m and (
        not isinstance(metrics, dict) or not all(_is_number(v) for v in metrics.values())
    ):
        errors.append("manifest.metrics must be an object whose values are finite numbers")
    for key, limit in (("name", 200), ("license", 200), ("description", MAX_TEXT)):
        if key in m and (not isinstance(m[key], str) or len(m[key]) > limit):
            errors.append(f"manifest.{key} must be a string of at most {limit} characters")
    return errors


def expert_config_from_manifest(m: dict) -> ExpertConfig:
    """The ExpertConfig a valid manifest describes."""
    arch = m["architecture"]
    if m["kind"] == "lora":
        return ExpertConfig(kind="lora", domain=m["domain"], labels=list(m["labels"]),
                            hidden_size=m["backbone"]["hidden_size"],
                            split_layer=m["split_layer"], lora=arch["adapter_config"])
    return ExpertConfig(
        kind=m["kind"], domain=m["domain"], labels=list(m["labels"]),
        hidden_size=m["backbone"]["hidden_size"], split_layer=m["split_layer"],
        n_branch_layers=arch["n_branch_layers"], mlp_hidden=arch["mlp_hidden"],
        dropout=float(arch["dropout"]), layer_config=arch.get("layer_config"),
    )


def build_manifest(
    expert: nn.Module, tensors: dict[str, torch.Tensor], *, backbone: Backbone,
    training: dict, metrics: dict, extra: dict | None = None,
) -> dict:
    """The manifest describing `expert` with weights `tensors`."""
    cfg = expert.config
    arch: dict[str, Any] = {
        "mlp_hidden": cfg.mlp_hidden, "n_branch_layers": cfg.n_branch_layers,
        "dropout": cfg.dropout,
    }
    if cfg.kind == "branch":
        arch["layer_config"] = dict(cfg.layer_config)
    manifest = {
        "format_version": FORMAT_VERSION, "kind": cfg.kind, "domain": cfg.domain,
        "labels": list(cfg.labels),
        "backbone": {
            "name": backbone.name, "fingerprint": backbone.fingerprint,
            "num_layers": backbone.num_layers, "hidden_size": backbone.hidden_size,
        },
        "split_layer": cfg.split_layer, "architecture": arch,
        "tensors": {
            k: {"dtype": _TORCH_TO_ST[str(v.dtype)], "shape": list(v.shape)}
            for k, v in tensors.items()
        },
        "training": training, "metrics": {k: float(v) for k, v in metrics.items()},
    }
    manifest.update(extra or {})
    return manifest
