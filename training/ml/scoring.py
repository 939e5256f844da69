"""Scoring one expert on labelled texts it may only partly cover."""
from __future__ import annotations

import torch
from torch import nn

from experts.ml.features import FeatureCache
from experts.ml.modules import TrunkBatch, collate_trunk
from gating.ml.metrics import accuracy, macro_f1


@torch.inference_mode()
def expert_predict(expert: nn.Module, texts: list[str], *, cache: FeatureCache,
                   batch_size: int = 256) -> list[str]:
    """The expert's label for each text, computed from cached trunk features."""
    cfg = expert.config
    device = next(expert.parameters()).device
    pooled = cache.pooled(texts, layer=cfg.split_layer)  # (N, H)
    tokens = cache.tokens(texts, layer=cfg.split_layer) if expert.needs_tokens else None
    expert.eval()
    out: list[str] = []
    for start in range(0, len(texts), batch_size):
        rows = slice(start, start + batch_size)
        if tokens is None:
            trunk = TrunkBatch(pooled=pooled[rows].to(device))
        else:
            trunk = collate_trunk(tokens[rows], pooled=pooled[rows], device=device)
        ids = expert(trunk).argmax(dim=-1).tolist()  # (B,)
        out.extend(cfg.labels[i] for i in ids)
    return out


def score_expert(expert: nn.Module, rows: list[tuple[str, str]], *,
                 cache: FeatureCache) -> dict[str, float]:
    """accuracy and macro-F1 on `rows`; a label the expert lacks always counts as wrong."""
    if not rows:
        raise ValueError("no rows to score")
    texts = [t for t, _ in rows]
    pred = expert_predict(expert, texts, cache=cache)
    ids: dict[str, int] = {}
    gold_ids = [ids.setdefault(y, len(ids)) for _, y in rows]
    domain_ids = sorted(set(gold_ids))
    pred_ids = [ids.setdefault(y, len(ids)) for y in pred]
    return {"accuracy": accuracy(gold_ids, pred_ids),
            "macro_f1": macro_f1(gold_ids, pred_ids, domain_ids), "n": len(rows)}
