"""Gating evaluation, Django-free: the one report the EVALUATE job and the benchmark produce.

Per domain and summarised: accuracy and macro-F1 of the routed mixture, the dense mixture and
the unregularised router; routing health on a domain-balanced sample; compute (FLOPs, dense vs
routed); Shapley and leave-one-out credit per expert and per group of experts (e.g. a
contributor); every accuracy with its n and 95 % Wilson interval, and the per-row hits so two
reports on the same rows can be compared with a paired interval (gating.ml.stats).
"""
from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from experts.ml.common import ProgressFn, StopFn, report
from experts.ml.data import DomainData, Example
from experts.ml.features import FeatureCache
from experts.ml.trunk import TrunkSet
from gating.ml.bundle import GatingError, GatingModel
from gating.ml.credit import DEFAULT_PERMUTATIONS, EXACT_MAX, moe_shapley
from gating.ml.flops import moe_compute
from gating.ml.metrics import (
    balanced_sample,
    classification_report,
    dispatch_load,
    routing_report,
    summarize,
)
from gating.ml.moe import LabelSpace, MixtureOfExperts
from gating.ml.stats import accuracy_interval


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
    topk_idx: torch.Tensor  # (N, k) the router's top-k experts of each input
    runs: torch.Tensor  # (N, E) bool, the experts that ran on each input (as the mix serves)
    lead: torch.Tensor  # (N,) the heaviest expert that ran (top-k: the router's top-1)


@torch.no_grad()
def predict_moe(
    moe: MixtureOfExperts, trunks: TrunkSet, *, top_k: int | None = None,
    mix: str | None = None, exclude: Sequence[int] = (), batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> Predictions:
    """Union-space predictions of the real MoE forward, in input order: mixed as `mix` says
    (gating.ml.mixes.MIXES; default the router's own, "top_k" when a top_k is given)."""
    moe.eval()
    n = len(trunks)
    pred = torch.empty(n, dtype=torch.long)
    probs = torch.empty(n, moe.n_experts)
    k = min(top_k or moe.router.config.top_k, moe.n_experts - len(exclude))
    topk = torch.empty(n, k, dtype=torch.long)
    runs = torch.empty(n, moe.n_experts, dtype=torch.bool)
    lead = torch.empty(n, dtype=torch.long)
    for rows, batch in trunks.batches(batch_size, device=device):
        out = moe(batch, top_k=top_k, mix=mix, exclude=exclude)
        pred[rows] = out.log_probs.argmax(dim=1).cpu()
        probs[rows] = out.probs.cpu()
        topk[rows] = out.topk_idx.cpu()
        runs[rows] = out.runs.cpu()
        lead[rows] = out.weights.argmax(dim=1).cpu()
    return Predictions(pred=pred, probs=probs, topk_idx=topk, runs=runs, lead=lead)


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
    mix: str | None = None, exclude: Sequence[int] = (),
    batch_size: int = 128, device: str | torch.device = "cpu",
) -> tuple[dict, list[Predictions]]:
    """score_union of the MoE's predictions on every set, plus the raw predictions."""
    predictions = [
        predict_moe(moe, s.trunks, top_k=top_k, mix=mix, exclude=exclude,
                    batch_size=batch_size, device=device)
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
    runs = torch.cat([p.runs for p in predictions])
    lead = torch.cat([p.lead for p in predictions])
    rows = torch.tensor(balanced_sample(domains, seed=seed), dtype=torch.long)
    out = routing_report(
        probs[rows], runs=runs[rows], lead=lead[rows], expert_domains=moe.expert_domains(),
        input_domains=[domains[i] for i in rows.tolist()], expert_names=expert_names,
    )
    out["per_domain_n"] = int(len(rows) // max(len(sets), 1))
    return out


def eval_rows(domain: DomainData) -> tuple[list[Example], str]:
    """The rows a domain is scored on: its test split, else its dev split (and which)."""
    if domain.test:
        return domain.test, "test"
    if domain.dev:
        return domain.dev, "dev"
    raise GatingError(f"domain {domain.name!r} has neither a test nor a dev split to score on")


def eval_sets(model: GatingModel, domains: Sequence[DomainData], cache: FeatureCache,
              on_progress: ProgressFn | None = None) -> tuple[list[EvalSet], dict[str, str]]:
    """Each domain's evaluation rows as trunk features of everything the model reads."""
    space = model.moe.label_space
    sets, used = [], {}
    for d in domains:
        rows, used[d.name] = eval_rows(d)
        trunks = cache.load([t for t, _ in rows], model.spec, on_progress=on_progress)
        targets = torch.tensor([space.index(d.name, y) for _, y in rows])
        sets.append(EvalSet(domain=d.name, trunks=trunks, targets=targets))
    return sets, used


LENGTH_BUCKETS = ((1, 5), (6, 14), (15, 10_000))  # words per input


def routing_by_length(domains: Sequence[DomainData], preds: Sequence[Predictions],
                      experts) -> dict:
    """Routing accuracy per domain and input length (words), on every evaluation input.

    Sentiment's train split holds phrases while real inputs are sentences: this shows whether
    sentence-length inputs are routed as well as the short phrases the router mostly saw.
    """
    out: dict[str, dict] = {}
    for d, p in zip(domains, preds, strict=True):
        words = [len(t.split()) for t, _ in eval_rows(d)[0]]
        hits = [experts[e].config.domain == d.name for e in p.lead.tolist()]
        row = {}
        for lo, hi in LENGTH_BUCKETS:
            sel = [h for h, w in zip(hits, words, strict=True) if lo <= w <= hi]
            key = f"{lo}-{hi}" if hi < 10_000 else f">={lo}"
            row[key] = {"n": len(sel), "accuracy": sum(sel) / len(sel) if sel else None}
        out[d.name] = row
    return out


def _routing_matrix(model: GatingModel, sets: Sequence[EvalSet], preds) -> dict:
    """domain -> expert key -> share of the domain's dispatches that go to the expert."""
    out = {}
    for s, p in zip(sets, preds, strict=True):
        share = dispatch_load(p.runs)
        out[s.domain] = {k: float(share[i]) for i, k in enumerate(model.keys)}
    return out


def evaluate_gating(
    model: GatingModel, *, cache: FeatureCache, domains: Sequence[DomainData],
    on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
    flops_per_domain: int = 4, credit_groups: dict[str, list[str]] | None = None,
    batch_size: int = 128, device: str | torch.device = "cpu", seed: int = 0,
    sets: Sequence[EvalSet] | None = None, shapley_exact_max: int = EXACT_MAX,
    shapley_permutations: int = DEFAULT_PERMUTATIONS,
) -> dict:
    """The evaluation report: accuracy, routing health, compute, Shapley and leave-one-out credit.

    credit (per expert key) = summary accuracy - summary accuracy with that expert removed and
    the router renormalised over the rest; credit_groups (e.g. contributor -> their experts)
    get the same leave-group-out drop. shapley / shapley_by_contributor: Shapley values in the
    summary accuracy (gating.ml.credit), exact up to shapley_exact_max experts, else sampled
    with shapley_permutations orders. `sets` reuses evaluation sets the caller built.
    """
    t0 = time.perf_counter()
    moe = model.moe.to(device).eval()
    n = moe.n_experts
    steps = 5.0 + n + len(credit_groups or {})
    report(on_progress, should_stop, 0, steps, "encoding evaluation texts")
    used = {d.name: eval_rows(d)[1] for d in domains}
    if sets is None:
        sets, used = eval_sets(model, domains, cache)
    report(on_progress, should_stop, 1, steps, "scoring the routed mixture")
    k = moe.router.config.top_k
    kw = {"batch_size": batch_size, "device": device}
    scores, preds = evaluate_moe(moe, sets, **kw)  # as served: the router's own top_k and mix
    dense_scores, _ = evaluate_moe(moe, sets, mix="dense", **kw)
    out: dict = {
        "eval_split": used,
        "n_eval": {s.domain: len(s.targets) for s in sets},
        "domains": scores["domains"],
        "summary": scores["summary"],
        "dense": dense_scores,
        "routing": balanced_routing(moe, sets, preds, expert_names=model.keys, seed=seed),
        "routing_matrix": _routing_matrix(model, sets, preds),
        "routing_by_length": routing_by_length(domains, preds, moe.experts),
        "router_layers": list(moe.router.config.input_layers),
        "experts": [{"key": key, "domain": e.config.domain, "kind": e.config.kind,
                     "split_layer": e.config.split_layer}
                    for key, e in zip(model.keys, moe.experts, strict=True)],
    }
    report(on_progress, should_stop, 2, steps, "scoring the unregularised router")
    if model.unregularized is not None:
        unreg = MixtureOfExperts(model.unregularized.to(device), list(moe.experts),
                                 moe.label_space).eval()
        u_scores, u_preds = evaluate_moe(unreg, sets, top_k=k, **kw)
        out["unregularized"] = {
            "summary": u_scores["summary"], "domains": u_scores["domains"],
            "routing": balanced_routing(unreg, sets, u_preds, expert_names=model.keys,
                                        seed=seed),
        }
    report(on_progress, should_stop, 3, steps, "measuring compute")
    out["compute"] = _compute(model, cache, domains, flops_per_domain, seed=seed, device=device)
    base = out["summary"]["accuracy"]
    loo = _leave_out(model, sets, {key: [key] for key in model.keys}, on_progress, should_stop,
                     start=4, steps=steps, **kw)
    out["accuracy_without"] = loo
    out["credit"] = {key: base - acc for key, acc in loo.items()}
    if credit_groups:
        loo_groups = _leave_out(model, sets, credit_groups, on_progress, should_stop,
                                start=4 + n, steps=steps, **kw)
        out["credit_by_contributor"] = {g: base - acc for g, acc in loo_groups.items()}
    report(on_progress, should_stop, steps - 1, steps, "Shapley credit")
    sh = moe_shapley(moe, sets, keys=list(model.keys), top_k=k, groups=credit_groups,
                     exact_max=shapley_exact_max, permutations=shapley_permutations,
                     seed=seed, **kw)
    out["shapley"] = sh["values"]
    out["shapley_ci95"] = sh["ci95"]
    out["shapley_method"] = {"method": sh["method"], "permutations": sh["permutations"],
                             "coalitions": sh["coalitions"]}
    if credit_groups:
        out["shapley_by_contributor"] = sh["groups"]
        out["shapley_by_contributor_ci95"] = sh["groups_ci95"]
    out["row_hits"] = row_hits(sets, preds)
    out["rows_digest"] = _rows_digest(domains, used)
    for per_domain in (out["domains"], out["dense"]["domains"],
                       (out.get("unregularized") or {}).get("domains") or {}):
        with_intervals(per_domain, out["n_eval"])
    out["seconds"] = round(time.perf_counter() - t0, 2)
    report(on_progress, None, steps, steps, "evaluation done")
    return out


def with_intervals(per_domain: dict[str, dict], n_eval: dict[str, int]) -> dict:
    """Add each domain's n and the 95 % Wilson interval of its accuracy (in place)."""
    for name, row in per_domain.items():
        n = int(n_eval.get(name, 0))
        row["n"] = n
        row["interval"] = accuracy_interval(row["accuracy"], n)
    return per_domain


def row_hits(sets: Sequence[EvalSet], preds: Sequence[Predictions]) -> dict[str, str]:
    """domain -> one '1'/'0' per evaluation row: whether the routed prediction was right."""
    return {s.domain: "".join("1" if h else "0" for h in (p.pred == s.targets).tolist())
            for s, p in zip(sets, preds, strict=True)}


def _rows_digest(domains: Sequence[DomainData], used: dict[str, str]) -> dict[str, str]:
    """domain -> sha256 of its evaluation rows: equal digests mean a paired comparison is fair."""
    out = {}
    for d in domains:
        h = hashlib.sha256(used.get(d.name, "").encode())
        for text, label in eval_rows(d)[0]:
            h.update(b"\0" + text.encode() + b"\1" + str(label).encode())
        out[d.name] = h.hexdigest()
    return out


def _leave_out(model: GatingModel, sets: Sequence[EvalSet], groups: dict[str, list[str]],
               on_progress, should_stop, *, start: float, steps: float, **kw
               ) -> dict[str, float]:
    """Summary accuracy with each group of experts removed (0.0 when nothing would remain)."""
    moe = model.moe
    out = {}
    for j, (name, keys) in enumerate(groups.items()):
        report(on_progress, should_stop, start + j, steps, f"leave-one-out: without {name}")
        exclude = [i for i, key in enumerate(model.keys) if key in keys]
        if len(exclude) >= moe.n_experts:
            out[name] = 0.0
            continue
        scores, _ = evaluate_moe(moe, sets, exclude=exclude, **kw)
        out[name] = scores["summary"]["accuracy"]
    return out


def _compute(model: GatingModel, cache: FeatureCache, domains: Sequence[DomainData],
             per_domain: int, *, seed: int, device) -> dict:
    """FLOPs per input on a domain-balanced sample of evaluation texts, trunk included."""
    rng = random.Random(seed)
    texts = []
    for d in domains:
        pool = [t for t, _ in eval_rows(d)[0]]
        texts.extend(rng.sample(pool, min(per_domain, len(pool))))
    spec, backbone = model.spec, cache.backbone
    out = moe_compute(model.moe, cache.load(texts, spec), device=device,
                      trunk_fn=lambda i: backbone.encode_set(texts[i : i + 1], spec))
    for name in ("expert_flops_per_input", "expert_routed_flops_per_input", "dispatch_share"):
        out[name] = dict(zip(model.keys, out[name], strict=True))
    return out
