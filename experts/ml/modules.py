"""Expert modules: an MLP head on the pooled trunk, or fine-tuned top backbone layers + a head."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import AutoConfig, PretrainedConfig
from transformers.models.bert.modeling_bert import BertLayer
from transformers.models.roberta.modeling_roberta import RobertaLayer

# Kinds, config and layer fields are plain Python in architecture.py (the upload checks read
# them without torch); re-exported here, where the modules they describe are built.
from experts.ml.architecture import (  # noqa: F401
    EXPERT_KINDS,
    LAYER_CONFIG_KEYS,
    LAYER_MODEL_TYPES,
    ExpertConfig,
)
from experts.ml.backbone import run_encoder_layers
from experts.ml.trunk import TrunkBatch, mean_pool

if TYPE_CHECKING:
    from experts.ml.backbone import Backbone

# Encoder layer classes a branch expert can be rebuilt from without loading the backbone.
LAYER_CLASSES: dict[str, type[nn.Module]] = {"bert": BertLayer, "roberta": RobertaLayer}


class MLPHead(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear over a pooled vector."""

    def __init__(self, hidden_size: int, mlp_hidden: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        # Normalising first makes one learning rate work across layers whose scales differ a lot.
        self.norm = nn.LayerNorm(hidden_size)
        self.fc1 = nn.Linear(hidden_size, mlp_hidden)
        self.fc2 = nn.Linear(mlp_hidden, n_labels)
        self.drop = nn.Dropout(dropout)

    @classmethod
    def from_config(cls, config: ExpertConfig) -> MLPHead:
        return cls(config.hidden_size, config.mlp_hidden, len(config.labels), config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.norm(x))  # (B, H)
        x = self.drop(nn.functional.gelu(self.fc1(x)))  # (B, M)
        return self.fc2(x)  # (B, C)


class HeadExpert(nn.Module):
    """Expert that only reads the pooled trunk output."""

    needs_tokens = False

    def __init__(self, config: ExpertConfig) -> None:
        super().__init__()
        self.config = config
        self.head = MLPHead.from_config(config)

    def forward(self, trunk: TrunkBatch) -> torch.Tensor:
        x = trunk.pooled.to(self.head.fc1.weight.dtype)  # (B, H)
        return self.head(x)  # (B, C)


class BranchExpert(nn.Module):
    """Expert with its own fine-tuned copy of the backbone layers above the split."""

    needs_tokens = True

    def __init__(
        self, config: ExpertConfig, layers: nn.ModuleList, hf_config: PretrainedConfig
    ) -> None:
        super().__init__()
        self.config = config
        self.hf_config = hf_config
        self.layers = layers
        self.head = MLPHead.from_config(config)

    def forward(self, trunk: TrunkBatch) -> torch.Tensor:
        if trunk.hidden is None or trunk.mask is None:
            raise ValueError("a branch expert needs token states (TrunkBatch.hidden and .mask)")
        dtype = self.head.fc1.weight.dtype
        hidden = run_encoder_layers(self.layers, self.hf_config, trunk.hidden.to(dtype), trunk.mask)
        pooled = mean_pool(hidden, trunk.mask).to(dtype)  # (B, H)
        return self.head(pooled)  # (B, C)


def hf_layer_config(layer_config: dict[str, Any]) -> PretrainedConfig:
    """Rebuild the HF config of one encoder layer from the fields stored in a manifest."""
    fields = dict(layer_config)
    model_type = fields.pop("model_type")
    if model_type not in LAYER_CLASSES:
        raise ValueError(f"unsupported backbone model_type {model_type!r}")
    hf_config = AutoConfig.for_model(model_type, **fields)
    hf_config._attn_implementation = "sdpa"
    return hf_config


def build_expert(cfg: ExpertConfig, backbone: Backbone | None = None) -> HeadExpert | BranchExpert:
    """Build an expert; a branch copies its layers from `backbone`, else builds them from config."""
    if cfg.kind == "head":
        return HeadExpert(cfg)
    if cfg.kind == "lora":
        raise ValueError("a LoRA expert is loaded from its adapter (experts.ml.lora), not built")
    if cfg.kind != "branch":
        raise ValueError(f"expert kind must be one of {EXPERT_KINDS}, got {cfg.kind!r}")
    if backbone is not None:
        expected = backbone.num_layers - cfg.split_layer
        if cfg.n_branch_layers != expected or expected < 1:
            raise ValueError(
                f"branch split_layer {cfg.split_layer} needs n_branch_layers = {expected} "
                f"(backbone has {backbone.num_layers} layers), got {cfg.n_branch_layers}"
            )
        if cfg.layer_config is None:
            cfg.layer_config = {k: getattr(backbone.hf_config, k) for k in LAYER_CONFIG_KEYS}
        layers = backbone.copy_layers(cfg.split_layer, backbone.num_layers).to(torch.float32)
        return BranchExpert(cfg, layers, backbone.hf_config)
    if cfg.layer_config is None:
        raise ValueError("a branch expert built without a backbone needs config.layer_config")
    hf_config = hf_layer_config(cfg.layer_config)
    layer_cls = LAYER_CLASSES[cfg.layer_config["model_type"]]
    layers = nn.ModuleList(layer_cls(hf_config, layer_idx=i) for i in range(cfg.n_branch_layers))
    return BranchExpert(cfg, layers, hf_config)
