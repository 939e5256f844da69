"""Evaluation metrics, defined once (docs: ARCHITECTURE.md, "Metrics").

Classification metrics take integer label ids (any sequence or 1-D tensor). Routing metrics take
the router's full softmax and top-k choices on a domain-balanced sample, so that data skew does
not hide a collapse onto the expert of the biggest domain.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch

# An expert is "dead" when its load is below this fraction of an even share (1/N): with N experts
# it receives fewer than 1 in 20*N dispatches. A strict zero would miss an expert the router all
# but ignores; an absolute threshold would flag every expert once N is large.
DEAD_SHARE_OF_EVEN = 0.05


def _as_list(values) -> list[int]:
    if isinstance(values, torch.Tensor):
        return [int(v) for v in values.reshape(-1).tolist()]
    return [int(v) for v in values]


def accuracy(y_true, y_pred) -> float:
    """accuracy = (1/n) sum_b [y_pred_b == y_true_b]; 0.0 for no inputs."""
    t, p = _as_list(y_true), _as_list(y_pred)
    if len(t) != len(p):
        raise ValueError(f"{len(t)} targets but {len(p)} predictions")
    if not t:
        return 0.0
    return sum(a == b for a, b in zip(t, p, strict=True)) / len(t)


def macro_f1(y_true, y_pred, labels: Sequence[int] | None = None) -> float:
    """macro-F1 = (1/|L|) sum_{c in L} 2 TP_c / (2 TP_c + FP_c + FN_c).

    L defaults to the labels seen in y_true or y_pred; pass a domain's own label ids to score
    a prediction outside the domain (a wrong domain in the union space) as a miss that counts
    against no class of the domain. A class with 2TP+FP+FN = 0 scores 0 (as scikit-learn).
    """
    t, p = _as_list(y_true), _as_list(y_pred)
    if len(t) != len(p):
        raise ValueError(f"{len(t)} targets but {len(p)} predictions")
    classes = sorted(set(t) | set(p)) if labels is None else list(labels)
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        tp = sum(1 for a, b in zip(t, p, strict=True) if a == c and b == c)
        fp = sum(1 for a, b in zip(t, p, strict=True) if a != c and b == c)
        fn = sum(1 for a, b in zip(t, p, strict=True) if a == c and b != c)
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return sum(scores) / len(scores)


def classification_report(y_true, y_pred, labels: Sequence[int] | None = None) -> dict:
    """{"accuracy", "macro_f1"} for one domain."""
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred, labels)}


def summarize(per_domain: dict[str, dict[str, float]]) -> dict[str, float]:
    """Unweighted mean over domains of each metric: every domain counts once, whatever its size.

    Only float metrics are averaged (a domain's n and interval are not means).
    """
    if not per_domain:
        return {}
    first = next(iter(per_domain.values()))
    keys = [k for k, v in first.items() if isinstance(v, float) and k != "n"]
    return {k: sum(d[k] for d in per_domain.values()) / len(per_domain) for k in keys}


def entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) = -sum_j p_j ln p_j (nats) along the last axis, with 0 ln 0 = 0."""
    p = p.double()
    return -(p * torch.log(p.clamp_min(1e-300))).sum(dim=-1)


def expert_load(topk_idx: torch.Tensor, n_experts: int) -> torch.Tensor:
    """load_i = (# rows with i in top-k) / (n * k): share of dispatches; sums to 1. (E,)"""
    counts = torch.bincount(topk_idx.reshape(-1).cpu(), minlength=n_experts).double()
    return counts / counts.sum().clamp_min(1)


def dispatch_load(runs: torch.Tensor) -> torch.Tensor:
    """load_i = share of all dispatches (an expert running on a row) that go to expert i, from
    (n, E) bool runs; sums to 1. For top-k routing the same as expert_load. (E,)"""
    counts = runs.cpu().double().sum(dim=0)
    return counts / counts.sum().clamp_min(1)


def utilization(load: torch.Tensor) -> float:
    """exp(H(load)) / N: 1.0 when all N experts get an even share, 1/N when one gets everything."""
    n = load.numel()
    return float(torch.exp(entropy(load)) / n)


def balanced_sample(domains: Sequence[str], *, per_domain: int | None = None, seed: int = 0):
    """Indices of an equal number of inputs per domain (default: the smallest domain's count)."""
    by_domain: dict[str, list[int]] = {}
    for i, d in enumerate(domains):
        by_domain.setdefault(d, []).append(i)
    if not by_domain:
        return []
    n = min(len(v) for v in by_domain.values()) if per_domain is None else per_domain
    rng = random.Random(seed)
    picked: list[int] = []
    for d in sorted(by_domain):
        rows = by_domain[d]
        picked.extend(rows if len(rows) <= n else rng.sample(rows, n))
    return sorted(picked)


def routing_report(
    probs: torch.Tensor,
    topk_idx: torch.Tensor | None = None,
    *,
    expert_domains: Sequence[str],
    input_domains: Sequence[str],
    expert_names: Sequence[str] | None = None,
    runs: torch.Tensor | None = None,
    lead: torch.Tensor | None = None,
) -> dict:
    """Routing statistics (call it on a domain-balanced sample).

    - accuracy: share of inputs whose top-1 expert serves the input's own domain;
    - entropy: mean_b H(g(x_b)) in nats; normalized_entropy: that divided by ln N (0 if N = 1);
    - load: share of dispatches per expert (top-k membership), sums to 1;
    - utilization: exp(H(load)) / N;
    - dead_experts: experts whose load < DEAD_SHARE_OF_EVEN / N.
    probs: (n, E) full softmax; topk_idx: (n, k), column 0 the top-1 expert. Or, for a model
    that mixes otherwise (gating.ml.mixes), what it served: runs (n, E) bool, the experts that
    ran on each input (the dispatches), and lead (n,) the heaviest of them (the "top-1").
    """
    n_experts = probs.shape[-1]
    names = list(expert_names) if expert_names is not None else [str(i) for i in range(n_experts)]
    if len(input_domains) != probs.shape[0]:
        raise ValueError("one domain per input is needed")
    if (runs is None) != (lead is None) or (runs is None) == (topk_idx is None):
        raise ValueError("give either topk_idx or both runs and lead")
    top1 = (topk_idx[:, 0] if lead is None else lead).tolist()
    hits = [expert_domains[e] == d for e, d in zip(top1, input_domains, strict=True)]
    h = entropy(probs).mean().item() if probs.shape[0] else 0.0
    load = expert_load(topk_idx, n_experts) if runs is None else dispatch_load(runs)
    threshold = DEAD_SHARE_OF_EVEN / n_experts
    return {
        "n_inputs": int(probs.shape[0]),
        "accuracy": sum(hits) / len(hits) if hits else 0.0,
        "entropy": h,
        "normalized_entropy": h / math.log(n_experts) if n_experts > 1 else 0.0,
        "utilization": utilization(load),
        "dead_experts": [names[i] for i in range(n_experts) if load[i] < threshold],
        "load": {names[i]: float(load[i]) for i in range(n_experts)},
    }
