"""The expert architectures a manifest can describe, in plain Python (no torch).

What the upload checks need to know about experts without building one: the kinds, the Hugging
Face fields a branch's layers are rebuilt from, the activation names those layers accept, and the
tensors (name -> shape) each architecture has. experts/ml/modules.py builds the modules from the
same definitions; a test checks that their state_dict() matches `expected_tensors` exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

EXPERT_KINDS = ("head", "branch", "lora")
# HF model types whose encoder layer a branch expert can be rebuilt from (modules.LAYER_CLASSES).
LAYER_MODEL_TYPES = ("bert", "roberta")
LAYER_CONFIG_KEYS = (
    "model_type", "hidden_size", "num_attention_heads", "intermediate_size", "hidden_act",
    "layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob",
)
# The names transformers.activations.ACT2FN resolves (transformers 5.23; a test compares them).
HIDDEN_ACTS = frozenset({
    "gelu", "gelu_10", "gelu_accurate", "gelu_fast", "gelu_new", "gelu_python",
    "gelu_python_tanh", "gelu_pytorch_tanh", "hardswish", "laplace", "leaky_relu", "linear",
    "mish", "prelu", "quick_gelu", "relu", "relu2", "relu6", "sigmoid", "silu", "sqrtsoftplus",
    "swish", "tanh", "xielu",
})


@dataclass
class ExpertConfig:
    # head = MLP on pooled trunk; branch = top layers + MLP; lora = PEFT adapter + its head
    kind: Literal["head", "branch", "lora"]
    domain: str  # domain the expert classifies; labels are namespaced as "domain:label"
    labels: list[str]  # output classes, in logit order
    hidden_size: int  # backbone hidden size H
    split_layer: int  # trunk depth: backbone layers [0, split_layer) are shared and frozen
    n_branch_layers: int = 0  # branch: fine-tuned layers above the split (= num_layers - split)
    mlp_hidden: int = 256  # width of the MLP head's hidden layer
    dropout: float = 0.1  # dropout in the MLP head during training
    layer_config: dict[str, Any] | None = field(default=None)  # branch: LAYER_CONFIG_KEYS of HF
    lora: dict[str, Any] | None = field(default=None)  # lora: its adapter_config.json


def _head_tensors(h: int, m: int, c: int) -> dict[str, list[int]]:
    """MLPHead: LayerNorm(H) -> Linear(H, M) -> Linear(M, C)."""
    return {
        "head.norm.weight": [h], "head.norm.bias": [h],
        "head.fc1.weight": [m, h], "head.fc1.bias": [m],
        "head.fc2.weight": [c, m], "head.fc2.bias": [c],
    }


def _layer_tensors(prefix: str, h: int, inter: int) -> dict[str, list[int]]:
    """One Hugging Face BertLayer / RobertaLayer (self-attention, then the feed-forward block)."""
    out: dict[str, list[int]] = {}
    for proj in ("query", "key", "value"):
        out[f"{prefix}attention.self.{proj}.weight"] = [h, h]
        out[f"{prefix}attention.self.{proj}.bias"] = [h]
    out.update({
        f"{prefix}attention.output.dense.weight": [h, h],
        f"{prefix}attention.output.dense.bias": [h],
        f"{prefix}attention.output.LayerNorm.weight": [h],
        f"{prefix}attention.output.LayerNorm.bias": [h],
        f"{prefix}intermediate.dense.weight": [inter, h],
        f"{prefix}intermediate.dense.bias": [inter],
        f"{prefix}output.dense.weight": [h, inter],
        f"{prefix}output.dense.bias": [h],
        f"{prefix}output.LayerNorm.weight": [h],
        f"{prefix}output.LayerNorm.bias": [h],
    })
    return out


def expected_tensors(cfg: ExpertConfig) -> dict[str, list[int]]:
    """Tensor name -> shape of the head or branch expert `cfg` describes, in state_dict() order."""
    head = _head_tensors(cfg.hidden_size, cfg.mlp_hidden, len(cfg.labels))
    if cfg.kind == "head":
        return head
    if cfg.kind == "lora":  # PEFT's own layout for the adapter its config describes
        from experts.ml.lora_config import expected_lora_tensors

        return expected_lora_tensors(cfg.lora, hidden_size=cfg.hidden_size,
                                     num_layers=cfg.split_layer, n_labels=len(cfg.labels))
    if cfg.kind != "branch":
        raise ValueError(f"expert kind must be one of {EXPERT_KINDS}, got {cfg.kind!r}")
    if cfg.layer_config is None:
        raise ValueError("a branch expert needs config.layer_config")
    lc = cfg.layer_config  # the layers are built from it, the head from the backbone's width
    out: dict[str, list[int]] = {}
    for i in range(cfg.n_branch_layers):
        out.update(_layer_tensors(f"layers.{i}.", lc["hidden_size"], lc["intermediate_size"]))
    return {**out, **head}
