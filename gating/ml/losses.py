"""Router objective: pure functions of the MoE outputs, each citing where it comes from.

Defaults and why:
- LAMBDA_BAL = 0.01: the auxiliary load-balancing coefficient used throughout Switch Transformer
  (Fedus et al. 2021, section 2.2): large enough to prevent collapse, small enough not to fight
  the task loss.
- LAMBDA_Z = 1e-3: the router z-loss coefficient recommended by ST-MoE (Zoph et al. 2022, 3.3).
- LAMBDA_H = 0.01: the entropy term is in nats and lies in [-ln N, ln N], the same order of
  magnitude as the balancing loss (1 at balance), so it gets the same weight: a nudge towards
  confident-per-input, balanced-overall routing that never outweighs the NLL (a few tenths of a nat
  per input once experts are trained). docs/benchmarks.md reports what it changes.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from gating.ml.moe import MoEOutput

LAMBDA_BAL = 0.01
LAMBDA_Z = 1e-3
LAMBDA_H = 0.01


def nll_loss(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the integrated prediction.

    L_nll = -(1/B) sum_b log p(y_b | x_b), with p(y|x) = sum_i g_i(x) p_i(y|x) the mixture over the
    union label space (MoECollab, arXiv 2503.12592, integration of heterogeneous experts).
    log_probs: (B, Y) log p over union labels; targets: (B,) union label indices.
    """
    return F.nll_loss(log_probs.float(), targets.long())


def load_balancing_loss(
    probs: torch.Tensor, topk_idx: torch.Tensor, n_experts: int
) -> torch.Tensor:
    """Switch Transformer auxiliary load-balancing loss (Fedus et al. 2021, eq. 4-6).

    L_bal = N * sum_i f_i * P_i, where f_i is the fraction of dispatches (top-k memberships) sent to
    expert i (not differentiable) and P_i = (1/B) sum_b g_i(x_b) is the mean router probability
    (differentiable). Equals 1 at perfect balance, N on total collapse onto one expert.
    probs: (B, E) full softmax; topk_idx: (B, k).
    """
    counts = torch.bincount(topk_idx.reshape(-1), minlength=n_experts).to(probs.dtype)  # (E,)
    f = counts / counts.sum().clamp_min(1)  # (E,)
    p_mean = probs.float().mean(dim=0)  # (E,)
    return n_experts * torch.sum(f * p_mean)


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE router z-loss (Zoph et al. 2022, eq. 5).

    L_z = (1/B) sum_b (log sum_j exp(z_bj))^2: keeps router logits small so the float32 softmax
    stays well conditioned. logits: (B, E).
    """
    return torch.logsumexp(logits.float(), dim=-1).pow(2).mean()


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) = -sum_j p_j ln p_j along the last axis, with 0 ln 0 = 0."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1)


def entropy_regularizer(probs: torch.Tensor) -> torch.Tensor:
    """Routing entropy regulariser (MoECollab, arXiv 2503.12592, gating regularisation).

    L_H = (1/B) sum_b H(g(x_b)) - H((1/B) sum_b g(x_b)), with H(p) = -sum_j p_j ln p_j in nats.
    Minimising it makes each input's gate confident (low per-input entropy) while keeping the
    average gate spread over experts (high entropy of the mean). Range [-ln N, ln N].
    probs: (B, E) full softmax.
    """
    probs = probs.float()
    return _entropy(probs).mean() - _entropy(probs.mean(dim=0))


def router_objective(
    out: MoEOutput,
    targets: torch.Tensor,
    *,
    lambda_bal: float = LAMBDA_BAL,
    lambda_z: float = LAMBDA_Z,
    lambda_h: float = LAMBDA_H,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L = L_nll + lambda_bal L_bal + lambda_z L_z + lambda_h L_H; returns (total, float parts)."""
    n_experts = out.probs.shape[-1]
    nll = nll_loss(out.log_probs, targets)
    bal = load_balancing_loss(out.probs, out.topk_idx, n_experts)
    z = router_z_loss(out.router_logits)
    h = entropy_regularizer(out.probs)
    total = nll + lambda_bal * bal + lambda_z * z + lambda_h * h
    parts = {
        "total": float(total.detach()),
        "nll": float(nll.detach()),
        "balance": float(bal.detach()),
        "z": float(z.detach()),
        "entropy": float(h.detach()),
    }
    return total, parts


def max_entropy(n_experts: int) -> float:
    """ln N: the largest routing entropy over N experts (0 for a single expert)."""
    return math.log(n_experts) if n_experts > 1 else 0.0
