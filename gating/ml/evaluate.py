"""Evaluate a MixtureOfExperts (or one expert) per domain over the union label space."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from gating.ml.metrics import balanced_sample, classification_report, routing_report, summarize
from gating.ml.moe import LabelSpace, MixtureOfExperts
from gating.ml.trunk import TrunkSet


@dataclass
class EvalSet:
    """One domain's evaluation inputs."""

    domain: str  # domain name (matches experts' config.domain)
    trunks: TrunkSet  # cached trunk features of the inputs
    targets: torch.Tensor  # (N,) union label index of each input


@dataclass
class Predictions:
    pred: torch.Tensor  # (N,) argmax over the union label space
    probs: torch.Tensor  # (N, E) router softmax
    topk_idx: torch.Tensor  # (N, k) experts each input was dispatched to


@torch.no_grad()
def predict_moe(
    moe: MixtureOfExperts, trunks: TrunkSet, *, top_k: int | None = None, dense: bool = False,
    batch_size: int = 128, device: str | torch.device = "cpu",
) -> Predictions:
    """Routed (or dense) union-space predictions of the real MoE forward, in input order."""
    moe.eval()
    needs_tokens = any(getattr(e, "needs_tokens", False) for e in moe.experts)
    n = len(trunks)
    pred = torch.empty(n, dtype=torch.long)
    probs = torch.empty(n, moe.n_experts)
    k = top_k or moe.router.config.top_k
    topk = torch.empty(n, k, dtype=torch.long)
    for rows, batch in trunks.batches(batch_size, device=device, tokens=needs_tokens):
        extra = trunks.router_input(rows)
        extra = extra.to(device) if extra is not None else None
        out = moe(batch, top_k=k, dense=dense, router_input=extra)
        pred[rows] = out.log_probs.argmax(dim=1).cpu()
        probs[rows] = out.probs.cpu()
        topk[rows] = out.topk_idx.cpu()
    return Predictions(pred=pred, probs=probs, topk_idx=topk)


@torch.no_grad()
def predict_expert(
    expert: nn.Module, trunks: TrunkSet, *, batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """(N,) argmax of one expert over its own labels (index into expert.config.labels)."""
    expert.eval()
    needs_tokens = getattr(expert, "needs_tokens", False)
    pred = torch.empty(len(trunks), dtype=torch.long)
    for rows, batch in trunks.batches(batch_size, device=device, tokens=needs_tokens):
        pred[rows] = expert(batch).argmax(dim=1).cpu()
    return pred


def score_union(
    sets: Sequence[EvalSet], preds: Sequence[torch.Tensor], label_space: LabelSpace
) -> dict:
    """Per-domain accuracy / macro-F1 of union-space predictions, and their unweighted summary.

    A prediction counts only if its `domain:label` is the target; macro-F1 averages over the
    domain's own labels, so a prediction in another domain is a miss for the true class.
    """
    per = {}
    for s, p in zip(sets, preds, strict=True):
        labels = label_space.domain_indices(s.domain)
        per[s.domain] = classification_report(s.targets, p, labels)
    return {"domains": per, "summary": summarize(per)}


def evaluate_moe(
    moe: MixtureOfExperts, sets: Sequence[EvalSet], *, top_k: int | None = None,
    dense: bool = False, batch_size: int = 128, device: str | torch.device = "cpu",
) -> tuple[dict, list[Predictions]]:
    """score_union of the MoE's predictions on every set, plus the raw predictions."""
    predictions = [
        predict_moe(moe, s.trunks, top_k=top_k, dense=dense, batch_size=batch_size, device=device)
        for s in sets
    ]
    return score_union(sets, [p.pred for p in predictions], moe.label_space), predictions


def balanced_routing(
    moe: MixtureOfExperts, sets: Sequence[EvalSet], predictions: Sequence[Predictions], *,
    expert_names: Sequence[str] | None = None, seed: int = 0,
) -> dict:
    """routing_report on a domain-balanced sample (min n per domain from each domain)."""
    domains = [s.domain for s, p in zip(sets, predictions, strict=True) for _ in range(len(p.pred))]
    probs = torch.cat([p.probs for p in predictions])
    topk = torch.cat([p.topk_idx for p in predictions])
    rows = torch.tensor(balanced_sample(domains, seed=seed), dtype=torch.long)
    report = routing_report(
        probs[rows], topk[rows], expert_domains=moe.expert_domains(),
        input_domains=[domains[i] for i in rows.tolist()], expert_names=expert_names,
    )
    report["per_domain_n"] = int(len(rows) // max(len(sets), 1))
    return report
