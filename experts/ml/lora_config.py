"""LoRA adapters as PEFT writes them, checked without torch: config schema and tensor layout.

What `save_pretrained` writes for a SEQ_CLS LoRA adapter on a BERT backbone: adapter_config.json
and adapter_model.safetensors holding, for every encoder layer and every target module,
`...layer.{l}.attention.self.{t}.lora_A.weight` (r, H) and `.lora_B.weight` (H, r), plus the
classification head PEFT saves with the adapter (`classifier.weight` (C, H), `.bias` (C,)).
The upload checks, the web process and the `moecollab` command line read it from here; a test
compares `expected_lora_tensors` with the layout peft itself builds (on the meta device).
"""
from __future__ import annotations

import math
from typing import Any

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PICKLED_WEIGHTS_NAMES = ("adapter_model.bin", "pytorch_model.bin")
PICKLE_REFUSAL = "pickle files are not accepted; save with safe_serialization=True"
MAX_RANK = 64  # a rank-64 adapter on every attention projection is already ~10 % of the model
MAX_ALPHA = 1024
# The attention projections (all H -> H) a LoRA expert may adapt. The "dense" layers are left
# out: the name matches four differently shaped modules of a BERT, which PEFT would all adapt.
TARGETS = ("query", "key", "value")
HEAD_MODULES = ("classifier", "score")  # what PEFT saves with a SEQ_CLS adapter
# LoraConfig's fields and defaults in peft 0.21.2 (tests/experts/ml/test_lora.py compares them
# with the installed peft). Every field not checked below must keep its default: several carry
# callables or training-time machinery (auto_mapping, eva/corda/loftq, megatron, ...).
LORA_DEFAULTS: dict[str, Any] = {
    "task_type": None, "peft_type": None, "auto_mapping": None, "peft_version": None,
    "base_model_name_or_path": None, "revision": None, "inference_mode": False, "r": 8,
    "target_modules": None, "exclude_modules": None, "lora_alpha": 8, "lora_dropout": 0.0,
    "fan_in_fan_out": False, "bias": "none", "use_rslora": False, "modules_to_save": None,
    "init_lora_weights": True, "layers_to_transform": None, "layers_pattern": None,
    "rank_pattern": {}, "alpha_pattern": {}, "megatron_config": None,
    "megatron_core": "megatron.core", "trainable_token_indices": None, "loftq_config": {},
    "eva_config": None, "corda_config": None, "lora_ga_config": None, "use_dora": False,
    "velora_config": None, "alora_invocation_tokens": None, "use_qalora": False,
    "qalora_group_size": 16, "monteclora_config": None, "layer_replication": None,
    "runtime_config": None, "lora_bias": False, "target_parameters": None, "use_bdlora": None,
    "arrow_config": None, "kasa_config": None, "ensure_weight_tying": False,
}
_CHECKED = {"peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules",
            "bias", "modules_to_save", "layers_to_transform", "use_rslora", "init_lora_weights",
            "fan_in_fan_out", "inference_mode"}
_FREE_TEXT = {"base_model_name_or_path", "revision", "peft_version"}  # informational only
_EMPTY = (None, {}, [], False)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_adapter_config(cfg: Any, *, num_layers: int) -> list[str]:
    """Every problem of an adapter_config.json for this platform, each naming its field."""
    where = ADAPTER_CONFIG_NAME
    if not isinstance(cfg, dict):
        return [f"{where} must be a JSON object"]
    errors = []
    for key in sorted(set(cfg) - set(LORA_DEFAULTS)):
        errors.append(f"{where}: unknown option {_short(key)} (not a LoRA option of peft)")
    if cfg.get("peft_type") != "LORA":
        errors.append(f"{where}: peft_type must be \"LORA\", got {_short(cfg.get('peft_type'))}")
    if cfg.get("task_type") != "SEQ_CLS":
        errors.append(f"{where}: task_type must be \"SEQ_CLS\" (sequence classification), got "
                      f"{_short(cfg.get('task_type'))}")
    r = cfg.get("r", LORA_DEFAULTS["r"])
    if not _is_int(r) or not 1 <= r <= MAX_RANK:
        errors.append(f"{where}: r (the LoRA rank) must be an integer in 1..{MAX_RANK}")
    alpha = cfg.get("lora_alpha", LORA_DEFAULTS["lora_alpha"])
    if not _is_number(alpha) or not 0 < alpha <= MAX_ALPHA:
        errors.append(f"{where}: lora_alpha must be a number in (0, {MAX_ALPHA}]")
    dropout = cfg.get("lora_dropout", 0.0)
    if not _is_number(dropout) or not 0 <= dropout < 1:
        errors.append(f"{where}: lora_dropout must be a number in [0, 1)")
    targets = cfg.get("target_modules")
    if not isinstance(targets, list) or not targets or not all(
            isinstance(t, str) for t in targets):
        errors.append(f"{where}: target_modules must be a non-empty list of module names "
                      f"(of {', '.join(TARGETS)})")
    else:
        unknown = sorted(set(targets) - set(TARGETS))
        if unknown:
            errors.append(f"{where}: target_modules {_short(unknown)} do not exist in the "
                          f"backbone's attention (allowed: {', '.join(TARGETS)})")
    if cfg.get("bias", "none") != "none":
        errors.append(f"{where}: bias must be \"none\" (the backbone's biases stay frozen)")
    saved = cfg.get("modules_to_save")
    if saved is not None and (not isinstance(saved, list) or not all(
            isinstance(x, str) for x in saved) or not set(saved) <= set(HEAD_MODULES)):
        errors.append(f"{where}: modules_to_save may only name the classification head "
                      f"({', '.join(HEAD_MODULES)})")
    layers = cfg.get("layers_to_transform")
    if layers is not None and (not isinstance(layers, list) or not layers or not all(
            _is_int(x) and 0 <= x < num_layers for x in layers)):
        errors.append(f"{where}: layers_to_transform must be a list of layer indices in "
                      f"0..{num_layers - 1}")
    for key in ("use_rslora", "init_lora_weights", "inference_mode"):
        if key in cfg and not isinstance(cfg[key], bool):
            errors.append(f"{where}: {key} must be true or false")
    if cfg.get("fan_in_fan_out", False) is not False:
        errors.append(f"{where}: fan_in_fan_out must be false for a BERT backbone")
    for key in sorted(_FREE_TEXT & set(cfg)):
        if cfg[key] is not None and (not isinstance(cfg[key], str) or len(cfg[key]) > 500):
            errors.append(f"{where}: {key} must be a string of at most 500 characters")
    for key in sorted(set(cfg) & set(LORA_DEFAULTS) - _CHECKED - _FREE_TEXT):
        value, default = cfg[key], LORA_DEFAULTS[key]
        if value != default and not (value in _EMPTY and default in _EMPTY) and not (
                key == "runtime_config"):
            errors.append(f"{where}: option {key!r} is not supported here (it must keep peft's "
                          f"default {default!r})")
    return errors


def expected_lora_tensors(cfg: dict, *, hidden_size: int, num_layers: int, n_labels: int
                          ) -> dict[str, list[int]]:
    """Tensor name -> shape that peft's save_pretrained writes for a checked config."""
    r = cfg.get("r", LORA_DEFAULTS["r"])
    layers = cfg.get("layers_to_transform") or range(num_layers)
    out: dict[str, list[int]] = {}
    for layer in sorted(set(layers)):
        for target in sorted(set(cfg["target_modules"])):
            prefix = f"base_model.model.bert.encoder.layer.{layer}.attention.self.{target}"
            out[f"{prefix}.lora_A.weight"] = [r, hidden_size]
            out[f"{prefix}.lora_B.weight"] = [hidden_size, r]
    out["base_model.model.classifier.weight"] = [n_labels, hidden_size]
    out["base_model.model.classifier.bias"] = [n_labels]
    return out


def peft_manifest(adapter_config: dict, tensors: dict[str, dict], *, domain: str,
                  labels: list[str], platform: dict, training: dict | None = None,
                  extra: dict | None = None) -> dict:
    """The platform manifest of an adapter folder: what PEFT does not record (the domain and the
    label order), the platform's backbone, the adapter's config and its tensor list."""
    from experts.ml.manifest import FORMAT_VERSION

    manifest = {
        "format_version": FORMAT_VERSION, "kind": "lora", "domain": domain,
        "labels": list(labels),
        "backbone": {k: platform[k] for k in ("name", "fingerprint", "num_layers",
                                              "hidden_size")},
        "split_layer": platform["num_layers"],
        "architecture": {"adapter_config": adapter_config},
        "tensors": tensors,
        "training": training or {"source": "uploaded PEFT adapter",
                                 "peft_version": str(adapter_config.get("peft_version"))},
        "metrics": {},
    }
    manifest.update(extra or {})
    return manifest
