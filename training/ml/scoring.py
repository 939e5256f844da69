"""Scoring one expert on labelled texts it may only partly cover."""
from __future__ import annotations

import torch
from torch import nn

from experts.ml.features import FeatureCache
from experts.ml.trunk import TrunkSpec, expert_logits, expert_tap
from gating.ml.metrics import accuracy, macro_f1


@torch.inference_mode()
def expert_predict(expert: nn.Module, texts: list[str], *, cache: FeatureCache) -> list[str]:
    """The expert's label for each text, computed from cached trunk features."""
    layer, tokens = expert_tap(expert)
    trunks = cache.load(texts, TrunkSpec.of(pooled=[layer], tokens=[layer] if tokens else []))
    device = next(expert.parameters()).device
    ids = expert_logits(expert, trunks, device=device).argmax(dim=-1).tolist()  # (N,)
    return [expert.config.labels[i] for i in ids]


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
