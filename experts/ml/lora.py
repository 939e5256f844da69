"""LoRA experts in the standard PEFT format: what `save_pretrained` writes for SEQ_CLS.

A folder holds `adapter_config.json` and `adapter_model.safetensors` (LoRA matrices for the
backbone's attention layers plus the classification head PEFT saves with them). The platform
adds only what PEFT does not record: the domain and the order of the labels.

Checking uses PEFT itself: the adapter a config describes is built with `get_peft_model` on the
meta device (no memory, no weights), so the expected tensor names and shapes are PEFT's own.
Serving runs every LoRA expert of a gating model in one forward: a `LoraBank` is one PeftModel
over a private copy of the frozen backbone holding every adapter, called with a per-input
`adapter_names` list (PEFT's mixed-batch inference); each expert's classification head then
reads its own rows' pooled output. The trunk itself never carries an adapter.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PretrainedConfig

from experts.ml.lora_config import (  # noqa: F401 - the format's names, re-exported
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    LORA_DEFAULTS,
    check_adapter_config,
    expected_lora_tensors,
)


def lora_config(cfg: dict):
    """The peft LoraConfig of a checked adapter_config.json."""
    from peft import LoraConfig

    known = {f.name for f in dataclasses.fields(LoraConfig)} - {"runtime_config"}
    return LoraConfig(**{k: v for k, v in cfg.items() if k in known})


def expected_adapter_tensors(cfg: dict, *, hf_config: PretrainedConfig, n_labels: int
                             ) -> dict[str, list[int]]:
    """Tensor name -> shape that `save_pretrained` writes for this config on this backbone."""
    from peft import get_peft_model, get_peft_model_state_dict

    config = copy.deepcopy(hf_config)
    config.num_labels = n_labels
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
        peft_model = get_peft_model(model, lora_config(cfg))
    return {k: list(v.shape) for k, v in get_peft_model_state_dict(peft_model).items()}


def adapter_weights(peft_model: nn.Module, adapter_name: str = "default"
                    ) -> dict[str, torch.Tensor]:
    """The adapter's tensors as save_pretrained writes them, without embedding matrices: the
    vocabulary is never changed, and peft's "auto" would ask the Hub whether the base model's
    config exists (a network call on every snapshot and save)."""
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(peft_model, adapter_name=adapter_name,
                                     save_embedding_layers=False)


def split_adapter_state(state: dict[str, torch.Tensor]
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(LoRA matrices keyed for a PeftModel over the bare encoder, classification head)."""
    lora, head = {}, {}
    for name, tensor in state.items():
        if ".lora_" in name:
            lora[name.replace("base_model.model.bert.", "base_model.model.", 1)] = tensor
        else:
            head[name.rsplit(".", 1)[-1]] = tensor  # base_model.model.classifier.{weight,bias}
    return lora, head


class LoraBank(nn.Module):
    """One PeftModel over a private copy of the frozen encoder, holding many LoRA adapters."""

    def __init__(self, backbone) -> None:
        from transformers import AutoModel

        super().__init__()
        # Its own float32 copy from the backbone's files: adapters must never reach the trunk,
        # and the trunk may serve in bfloat16 while adapters were trained on float32 weights.
        base = AutoModel.from_pretrained(backbone.folder, local_files_only=True)
        self.base = base.to(backbone.device).float().eval().requires_grad_(False)
        self.peft = None  # built with the first adapter
        self.configs: dict[str, dict] = {}

    def add(self, key: str, cfg: dict, lora_state: dict[str, torch.Tensor]) -> None:
        from peft import PeftModel, set_peft_model_state_dict

        peft_cfg = lora_config({**cfg, "task_type": None, "modules_to_save": None,
                                "inference_mode": True})
        if self.peft is None:
            self.peft = PeftModel(self.base, peft_cfg, adapter_name=key)
        else:
            self.peft.add_adapter(key, peft_cfg)
        result = set_peft_model_state_dict(self.peft, lora_state, adapter_name=key)
        missing = [k for k in result.missing_keys if ".lora_" in k and f".{key}." in k]
        if result.unexpected_keys or missing:
            raise ValueError(f"adapter {key}: unexpected tensors {result.unexpected_keys[:3]}, "
                             f"missing {missing[:3]}")
        self.peft.eval().requires_grad_(False)
        self.configs[key] = dict(cfg)

    def adapter_state(self, key: str) -> dict[str, torch.Tensor]:
        state = adapter_weights(self.peft, key)
        return {k.replace("base_model.model.", "base_model.model.bert.", 1): v
                for k, v in state.items()}

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor,
                adapter_names: Sequence[str]) -> torch.Tensor:
        """(B, H) pooled output, row i through adapter adapter_names[i]."""
        out = self.peft(input_ids=input_ids, attention_mask=mask,
                        adapter_names=list(adapter_names))
        return out.pooler_output.float()


class LoraExpert(nn.Module):
    """A LoRA adapter of a bank plus its own classification head over the domain's labels."""

    needs_tokens = False
    needs_ids = True  # reads token ids and runs the whole backbone with its adapter

    def __init__(self, config, bank: LoraBank, key: str, head: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.config = config
        self.key = key
        object.__setattr__(self, "bank", bank)  # shared, not a child: saved once, not per expert
        n_labels, hidden = head["weight"].shape
        self.classifier = nn.Linear(hidden, n_labels)
        self.classifier.load_state_dict(head)
        self.requires_grad_(False)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled.to(self.classifier.weight.dtype))

    def forward(self, trunk) -> torch.Tensor:
        if trunk.input_ids is None or trunk.mask is None:
            raise ValueError("a LoRA expert needs the token ids (TrunkBatch.input_ids, .mask)")
        pooled = self.bank(trunk.input_ids, trunk.mask, [self.key] * trunk.input_ids.shape[0])
        return self.head(pooled)  # (B, C)

    def adapter_files(self) -> dict[str, bytes]:
        """adapter_config.json and adapter_model.safetensors, as PEFT writes them."""
        from safetensors.torch import save

        state = self.bank.adapter_state(self.key)
        state.update({f"base_model.model.classifier.{k}": v
                      for k, v in self.classifier.state_dict().items()})
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
        return {ADAPTER_CONFIG_NAME: (json.dumps(self.bank.configs[self.key], indent=2) + "\n"
                                      ).encode(),
                ADAPTER_WEIGHTS_NAME: save(state, metadata={"format": "pt"})}


def lora_expert_from_state(adapter: dict, state: dict[str, torch.Tensor], *, backbone,
                           domain: str, labels: list[str], key: str | None = None,
                           bank: LoraBank | None = None) -> LoraExpert:
    """A LoraExpert (in `bank`, else in a new bank on the backbone) from a PEFT adapter state."""
    from experts.ml.modules import ExpertConfig

    bank = bank if bank is not None else LoraBank(backbone)
    lora, head = split_adapter_state(state)
    key = key or f"adapter{len(bank.configs)}"
    bank.add(key, adapter, lora)
    config = ExpertConfig(kind="lora", domain=domain, labels=list(labels),
                          hidden_size=backbone.hidden_size, split_layer=backbone.num_layers,
                          lora=dict(adapter))
    return LoraExpert(config, bank, key, head).eval()


def lora_manifest(expert: LoraExpert, weights: bytes, *, backbone, training: dict,
                  metrics: dict, extra: dict | None = None) -> dict:
    """The platform manifest of a LoRA expert: what PEFT does not record, and provenance."""
    from experts.ml.manifest import FORMAT_VERSION
    from experts.ml.safetensors_header import parse_safetensors_header

    infos = parse_safetensors_header(weights)
    cfg = expert.config
    manifest = {
        "format_version": FORMAT_VERSION, "kind": "lora", "domain": cfg.domain,
        "labels": list(cfg.labels),
        "backbone": {"name": backbone.name, "fingerprint": backbone.fingerprint,
                     "num_layers": backbone.num_layers, "hidden_size": backbone.hidden_size},
        "split_layer": backbone.num_layers, "architecture": {"adapter_config": cfg.lora},
        "tensors": {k: {"dtype": v.dtype, "shape": v.shape} for k, v in infos.items()},
        "training": training, "metrics": {k: float(v) for k, v in metrics.items()},
    }
    manifest.update(extra or {})
    return manifest


def save_lora_artifact(expert: LoraExpert, out_dir, *, backbone, training: dict, metrics: dict,
                       extra: dict | None = None):
    """The folder PeftModel.from_pretrained loads as is, plus manifest.json and a model card."""
    from pathlib import Path

    from experts.ml.common import atomic_write_bytes
    from experts.ml.model_card import model_card

    files = expert.adapter_files()
    manifest = lora_manifest(expert, files[ADAPTER_WEIGHTS_NAME], backbone=backbone,
                             training=training, metrics=metrics, extra=extra)
    files["manifest.json"] = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    files["README.md"] = model_card(manifest).encode()
    out = Path(out_dir)
    for name in (ADAPTER_WEIGHTS_NAME, ADAPTER_CONFIG_NAME, "README.md", "manifest.json"):
        atomic_write_bytes(out / name, files[name])  # the manifest last: it points at the rest
    return out
