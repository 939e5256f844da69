"""Scoring one expert on labelled texts it may only partly cover."""
from __future__ import annotations

import torch
from torch import nn

from experts.ml.features import FeatureCache
from experts.ml.trunk import TrunkSpec, expert_logits
from gating.ml.metrics import accuracy, macro_f1

OUTPUT_CHECK = "outputs on real inputs"  # the validation check output_problem stands for


@torch.inference_mode()
def expert_logits_on(expert: nn.Module, texts: list[str], *,
                     cache: FeatureCache) -> torch.Tensor:
    """(N, C) logits of the expert for each text, computed from cached trunk features."""
    trunks = cache.load(texts, TrunkSpec.for_experts([expert]))
    device = next(expert.parameters()).device
    return expert_logits(expert, trunks, device=device).float().cpu()


def expert_predict(expert: nn.Module, texts: list[str], *, cache: FeatureCache) -> list[str]:
    """The expert's label for each text."""
    ids = expert_logits_on(expert, texts, cache=cache).argmax(dim=-1).tolist()  # (N,)
    return [expert.config.labels[i] for i in ids]


def output_problem(logits: torch.Tensor, texts: list[str]) -> str | None:
    """Why an expert's (N, C) logits on real texts show it broken, or None if they look sane.

    Finite weights can still give NaN or Inf on real inputs (huge rows that a single test
    input misses), which would poison every gating training that includes the expert; and
    logits that are the same for every input mean the expert ignores what it reads.
    """
    n = logits.shape[0]
    bad = ~torch.isfinite(logits).all(dim=-1)  # (N,)
    if bad.any():
        return f"non-finite logits (NaN or Inf) on {int(bad.sum())} of {n} inputs"
    if len(set(texts)) > 1:
        spread = (logits - logits[:1]).abs().amax()
        if spread <= 1e-6 * max(1.0, float(logits.abs().amax())):
            return (f"the same logits for all {n} inputs: the expert does not depend on its "
                    "input")
    return None


def score_expert(expert: nn.Module, rows: list[tuple[str, str]], *,
                 cache: FeatureCache) -> dict:
    """accuracy, macro-F1 and n on `rows` (a label the expert lacks always counts as wrong),
    and `problem`: output_problem of its logits, None when they are sane."""
    if not rows:
        raise ValueError("no rows to score")
    texts = [t for t, _ in rows]
    logits = expert_logits_on(expert, texts, cache=cache)  # (N, C)
    pred = [expert.config.labels[i] for i in logits.argmax(dim=-1).tolist()]
    ids: dict[str, int] = {}
    gold_ids = [ids.setdefault(y, len(ids)) for _, y in rows]
    domain_ids = sorted(set(gold_ids))
    pred_ids = [ids.setdefault(y, len(ids)) for y in pred]
    return {"accuracy": accuracy(gold_ids, pred_ids),
            "macro_f1": macro_f1(gold_ids, pred_ids, domain_ids), "n": len(rows),
            "problem": output_problem(logits, texts)}
