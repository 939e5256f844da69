"""The gating network: pooled trunk features of its input layers -> one logit per expert.

With `surface_buckets` > 0 the router also reads the text as written: a bag of hashed
character n-grams and words (experts.ml.surface), one learned vector of expert logits per
bucket, averaged over the text's buckets and added to the logits of the trunk features (a
fastText-style linear model beside the linear gate, trained jointly with it).

Noisy top-k gating follows Shazeer et al. 2017 ("Outrageously Large Neural Networks: The
Sparsely-Gated Mixture-of-Experts Layer"): H(x) = x W_g + eps * softplus(x W_noise), eps ~ N(0, 1),
applied only in training. The softmax runs in float32 and the kept top-k weights are renormalised
so they sum to one (as in the Mixtral MoE block).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from experts.ml.surface import LATEST_SURFACE_VERSION, SurfaceBag, check_surface_version
from gating.ml.mixes import check_mix


@dataclass
class RouterConfig:
    hidden_size: int  # width of the features the router reads (len(input_layers) * H)
    n_experts: int  # number of experts it chooses among (E)
    top_k: int = 1  # experts each input is sent to at inference
    temperature: float = 1.0  # softmax temperature; > 1 flattens, < 1 sharpens the gate
    noise_std: float = 1.0  # scale of the learned Shazeer noise in training; 0 disables it
    mlp_hidden: int = 0  # 0 = linear router; > 0 = one hidden layer of this width (GELU)
    dropout: float = 0.0  # dropout on the router input (training only)
    # Backbone layers whose pooled states, side by side, are the router's input; () = it reads
    # the `pooled` of a single-layer TrunkBatch (stand-alone use and tests).
    input_layers: tuple[int, ...] = ()
    surface_buckets: int = 0  # hash buckets of the surface features it reads; 0 = none
    # which feature set those buckets hash (experts.ml.surface.SURFACE_VERSIONS); a bundle
    # written before versions existed holds version 1 (gating.ml.bundle reads it so)
    surface_version: int = LATEST_SURFACE_VERSION
    mix: str = "top_k"  # which experts run on an input and with what weight (MIXES)

    def __post_init__(self) -> None:
        self.input_layers = tuple(int(x) for x in self.input_layers)  # JSON gives a list
        check_mix(self.mix)
        check_surface_version(self.surface_version)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["input_layers"] = list(self.input_layers)
        return out


def router_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B, E) the router's full float32 softmax at a temperature."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.softmax(logits.float() / temperature, dim=-1)


def route(
    logits: torch.Tensor, top_k: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full float32 softmax, the top-k experts, and their weights renormalised to sum to one."""
    n_experts = logits.shape[-1]
    if not 1 <= top_k <= n_experts:
        raise ValueError(f"top_k must be in [1, {n_experts}], got {top_k}")
    probs = router_probs(logits, temperature)  # (B, E)
    topk_w, topk_idx = probs.topk(top_k, dim=-1)  # (B, k), (B, k)
    topk_w = topk_w / topk_w.sum(dim=-1, keepdim=True)  # (B, k)
    return probs, topk_idx, topk_w


class Router(nn.Module):
    """Linear (or one-hidden-layer) gate over pooled trunk features, noisy in training."""

    def __init__(self, config: RouterConfig) -> None:
        super().__init__()
        if config.n_experts < 1:
            raise ValueError("a router needs at least one expert")
        self.config = config
        # Per-feature standardisation of the input with training-set statistics (fit_input_stats):
        # router inputs may concatenate trunk layers whose scales differ by orders of magnitude.
        self.register_buffer("input_mean", torch.zeros(config.hidden_size))
        self.register_buffer("input_std", torch.ones(config.hidden_size))
        self.dropout = nn.Dropout(config.dropout)
        if config.mlp_hidden > 0:
            self.body: nn.Module = nn.Sequential(
                nn.Linear(config.hidden_size, config.mlp_hidden), nn.GELU()
            )
            width = config.mlp_hidden
        else:
            self.body = nn.Identity()
            width = config.hidden_size
        self.gate = nn.Linear(width, config.n_experts)
        self.surface: nn.EmbeddingBag | None = None
        if config.surface_buckets > 0:
            self.surface = nn.EmbeddingBag(config.surface_buckets, config.n_experts, mode="mean",
                                           include_last_offset=True)
            nn.init.zeros_(self.surface.weight)  # starts as the trunk-only router
        # Per-input, per-expert noise scale learned as in Shazeer et al. (softplus(x W_noise)).
        self.noise = nn.Linear(width, config.n_experts)
        nn.init.zeros_(self.noise.weight)
        nn.init.zeros_(self.noise.bias)

    @torch.no_grad()
    def fit_input_stats(self, features: torch.Tensor) -> None:
        """Set the input standardisation from (N, H) training features."""
        features = features.float()
        self.input_mean.copy_(features.mean(dim=0))
        self.input_std.copy_(features.std(dim=0).clamp_min(1e-6))

    def forward(self, pooled: torch.Tensor, surface: SurfaceBag | None = None) -> torch.Tensor:
        x = (pooled.float() - self.input_mean) / self.input_std  # (B, H)
        h = self.body(self.dropout(x))  # (B, W)
        logits = self.gate(h)  # (B, E)
        if self.surface is not None:
            if surface is None:
                raise ValueError("this router reads the texts' surface features and none were "
                                 f"given (the trunk spec needs surface="
                                 f"{self.config.surface_buckets})")
            if (surface.buckets, surface.version) != (
                    self.config.surface_buckets, self.config.surface_version
            ) or len(surface) != len(logits):
                raise ValueError(f"surface features (version {surface.version}) of "
                                 f"{len(surface)} texts in {surface.buckets} buckets for a "
                                 f"router of {self.config.surface_buckets} buckets (version "
                                 f"{self.config.surface_version}) and {len(logits)} rows")
            logits = logits + self.surface(surface.ids, surface.offsets)  # (B, E)
        if self.training and self.config.noise_std > 0:
            scale = F.softplus(self.noise(h))  # (B, E)
            logits = logits + torch.randn_like(logits) * scale * self.config.noise_std
        return logits  # (B, E)

    def select(
        self, logits: torch.Tensor, top_k: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """route() with this router's temperature and default k."""
        return route(logits, top_k or self.config.top_k, self.config.temperature)
