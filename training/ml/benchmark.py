"""End-to-end benchmark: per-domain experts vs a monolithic baseline vs the routed mixture.

Trains one expert per domain, a monolithic baseline of the same kind on the union of all domains
(as many trainable parameters as all experts together), a router with the full objective and a
second one without the balance and entropy terms; then scores everything per domain on the
evaluation split (test files from eval_dir, else dev) and measures routing and FLOPs.
Model selection always uses dev.
"""
from __future__ import annotations

import logging
import os
import platform
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from experts.ml.backbone import BackboneConfig, load_backbone, resolve_device
from experts.ml.features import FeatureCache
from gating.ml.evaluate import EvalSet, balanced_routing, evaluate_moe, predict_expert, score_union
from gating.ml.flops import moe_compute
from gating.ml.metrics import classification_report, summarize
from gating.ml.moe import LabelSpace, MixtureOfExperts, join_label
from gating.ml.trunk import TrunkSet
from training.ml.benchmark_report import routing_by_length
from training.ml.common import TrainingStopped
from training.ml.data import DomainData, load_domain_dir, subsample
from training.ml.expert_train import ExpertTrainConfig, train_expert
from training.ml.router_train import (
    RouterData,
    RouterTrainConfig,
    cache_expert_log_probs,
    train_router,
)

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]
STAGES = ("features", "experts", "baseline", "router", "evaluate")


@dataclass
class BenchmarkConfig:
    data_dir: str  # folder with one sub-folder per domain (domain.json, train/dev.jsonl)
    eval_dir: str | None = None  # folder with <domain>/test.jsonl; None = score on dev
    expert_kind: str = "head"  # "head" or "branch"
    top_k: int = 1  # experts per input at inference
    max_train_per_domain: int | None = None  # stratified cap on each train split
    router_max_per_domain: int | None = None  # cap on router training inputs per domain
    device: str = "auto"  # "auto", "cpu", "cuda[:n]"
    seed: int = 0  # one seed for sampling, experts, baseline and routers
    cache_dir: str = "var/feature-cache"  # FeatureCache root (shared across runs)
    split_layer: int | None = None  # None = expert_train's default for the kind
    expert_epochs: int | None = None  # None = expert_train's default for the kind
    # Head experts and the baseline train with 8x the default batch (64) and sqrt-scaled LR:
    # 8x fewer optimizer steps; on sentiment dev 0.9274 vs 0.9252 with the defaults.
    head_batch_size: int = 512  # head-kind experts and baseline; branch uses expert_train's
    head_lr: float = 3e-3  # head-kind experts and baseline; branch uses expert_train's
    # Small matrices (heads, router) run several times faster on one thread than on two when the
    # cores are shared (measured 1.5 s vs 13.9 s per sentiment head epoch); None = leave as is.
    small_model_threads: int | None = 1
    # The router also reads the mean of the embedding-layer states (layer 0, no transformer
    # compute): bag-of-tokens cues (SMS spellings, question words) that the last layer's
    # sentence embedding blurs. Domain-ID dev accuracy of a linear probe: 0.964 on layer 6
    # alone, 0.983 on layers 6 + 0 (docs/benchmarks.md). () = the router reads `pooled` only.
    router_extra_layers: tuple[int, ...] = (0,)
    flops_per_domain: int = 16  # inputs per domain in the representative FLOP-count batch
    eval_batch_size: int = 128  # inputs per MoE forward at evaluation


def load_domains(cfg: BenchmarkConfig) -> list[DomainData]:
    """Every domain folder under data_dir, sorted by name; test split from eval_dir if given."""
    root = Path(cfg.data_dir)
    folders = sorted(p for p in root.iterdir() if (p / "domain.json").is_file())
    if not folders:
        raise FileNotFoundError(f"no domain folders (with domain.json) in {root}")
    domains = []
    for folder in folders:
        eval_file = Path(cfg.eval_dir) / folder.name / "test.jsonl" if cfg.eval_dir else None
        domains.append(
            load_domain_dir(
                folder, max_train=cfg.max_train_per_domain, seed=cfg.seed, eval_file=eval_file
            )
        )
    return domains


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def matched_mlp_hidden(
    kind: str, target: int, *, hidden_size: int, n_labels: int, branch_params: int = 0
) -> int:
    """MLP width whose model (head, plus branch layers for a branch) has ~`target` parameters."""
    # MLPHead = LayerNorm(2H) + Linear(H, m) + Linear(m, C): 2H + (H + 1) m + (m + 1) C.
    fixed = 2 * hidden_size + n_labels + (branch_params if kind == "branch" else 0)
    per_unit = hidden_size + 1 + n_labels
    return max(1, round((target - fixed) / per_unit))


@contextmanager
def _threads(n: int | None):
    """Temporarily run torch's CPU kernels on n threads (None: unchanged)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Timer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def stage(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.times[name] = timer.times.get(name, 0.0) + time.perf_counter() - self.t0

        return _Ctx()


def run_benchmark(
    cfg: BenchmarkConfig, *, on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Run the whole benchmark and return the report (see docs/benchmarks.md for every key)."""
    t_start = time.perf_counter()
    timer = _Timer()
    device = resolve_device(cfg.device)

    def progress(stage: str) -> None:
        if should_stop is not None and should_stop():
            raise TrainingStopped(f"benchmark stopped before {stage}")
        if on_progress is not None:
            on_progress(STAGES.index(stage), len(STAGES), stage)

    domains = load_domains(cfg)
    eval_split = "test" if cfg.eval_dir else "dev"
    backbone = load_backbone(BackboneConfig(device=str(device)))
    cache = FeatureCache(cfg.cache_dir, backbone)
    base = ExpertTrainConfig(
        kind=cfg.expert_kind, seed=cfg.seed, device=str(device), split_layer=cfg.split_layer,
        epochs=cfg.expert_epochs,
    ).resolved(backbone.num_layers)
    if cfg.expert_kind == "head":
        base = replace(base, batch_size=cfg.head_batch_size, lr=cfg.head_lr)
    small = cfg.small_model_threads if cfg.expert_kind == "head" else None
    split = base.split_layer
    tokens = cfg.expert_kind == "branch"

    def trunks(rows: list[tuple[str, str]]) -> TrunkSet:
        texts = [t for t, _ in rows]
        states = cache.tokens(texts, layer=split) if tokens else None
        pooled = cache.pooled(texts, layer=split)
        extra = [cache.pooled(texts, layer=layer) for layer in cfg.router_extra_layers]
        router_in = torch.cat([pooled, *extra], dim=1) if extra else None
        return TrunkSet(pooled=pooled, tokens=states, router=router_in)

    progress("features")
    with timer.stage("features"):
        router_train_rows = _router_rows(domains, cfg.router_max_per_domain, cfg.seed)
        feats = {}
        for d in domains:
            evaluation = d.test if eval_split == "test" else d.dev
            # Encode the train split now (the expert trainers then read it from the cache).
            texts = [t for t, _ in d.train]
            cache.tokens(texts, layer=split) if tokens else cache.pooled(texts, layer=split)
            feats[d.name] = {
                "dev": trunks(d.dev), "eval": trunks(evaluation),
                "router_train": trunks(router_train_rows[d.name]),
            }
        n_encoded = cache.encoded_count

    progress("experts")
    trained = {}
    with timer.stage("train_experts"), _threads(small):
        for d in domains:
            trained[d.name] = train_expert(
                base, backbone=backbone, cache=cache, domain=d, should_stop=should_stop
            )
    experts = [trained[d.name].expert.to(device).eval() for d in domains]
    space = LabelSpace.from_experts(experts)

    progress("baseline")
    with timer.stage("train_baseline"), _threads(small):
        baseline, baseline_info = _train_baseline(
            cfg, base, domains, experts, space, backbone=backbone, cache=cache,
            should_stop=should_stop,
        )

    progress("router")
    with timer.stage("train_router"), _threads(small):
        def router_data(split_name: str, rows_of: Callable[[DomainData], list]) -> RouterData:
            sets = [feats[d.name][split_name] for d in domains]
            merged = TrunkSet(
                pooled=torch.cat([s.pooled for s in sets]),
                tokens=[t for s in sets for t in s.tokens] if tokens else None,
            )
            router_in = torch.cat([s.router for s in sets]) if cfg.router_extra_layers else None
            targets = [space.index(d.name, y) for d in domains for _, y in rows_of(d)]
            names = [d.name for d in domains for _ in rows_of(d)]
            return RouterData(
                pooled=merged.pooled if router_in is None else router_in,
                targets=torch.tensor(targets), domains=names,
                expert_log_probs=cache_expert_log_probs(experts, merged, device=device),
            )

        train_data = router_data("router_train", lambda d: router_train_rows[d.name])
        dev_data = router_data("dev", lambda d: d.dev)
        rcfg = RouterTrainConfig(top_k=cfg.top_k, seed=cfg.seed, device=str(device))
        unreg_cfg = replace(rcfg, lambda_bal=0.0, lambda_h=0.0)
        with _threads(cfg.small_model_threads):
            router = train_router(rcfg, experts=experts, train=train_data, dev=dev_data,
                                  should_stop=should_stop)
            router_unreg = train_router(unreg_cfg, experts=experts, train=train_data,
                                        dev=dev_data, should_stop=should_stop)

    progress("evaluate")
    with timer.stage("evaluate"), _threads(small):
        sets = [
            EvalSet(
                domain=d.name, trunks=feats[d.name]["eval"],
                targets=_union_targets(d, _eval_rows(d, eval_split), space),
            )
            for d in domains
        ]
        report = _evaluate(cfg, domains, sets, experts, space, baseline, router, router_unreg,
                           device=device)
        flop_texts, flop_rows = _flop_sample(domains, eval_split, cfg.flops_per_domain, cfg.seed)
        moe = MixtureOfExperts(router.router, experts, space).to(device)
        flop_set = trunks(flop_rows)
        flop_batch = flop_set.batch(range(len(flop_rows)), device=device)
        flop_router = flop_set.router_input(range(len(flop_rows)))
        compute = moe_compute(
            moe, flop_batch, top_k=cfg.top_k,
            router_input=flop_router.to(device) if flop_router is not None else None,
            trunk_fn=lambda i: backbone.encode(flop_texts[i : i + 1], layer=split),
        )
    timer.times["total"] = time.perf_counter() - t_start
    report.update(
        eval_split=eval_split,
        compute=compute,
        timings_s={k: round(v, 2) for k, v in timer.times.items()},
        config=asdict(cfg),
        expert_train_config=asdict(base),
        router_train_config=rcfg.to_dict(),
        router_train={"regularized": router.metrics, "unregularized": router_unreg.metrics},
        router_history={"regularized": router.history, "unregularized": router_unreg.history},
        experts={d.name: trained[d.name].metrics for d in domains},
        baseline_info=baseline_info,
        environment={
            "device": str(device), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "backbone": backbone.name, "backbone_fingerprint": backbone.fingerprint,
            "split_layer": split, "texts_encoded": n_encoded,
        },
    )
    return report


def _union_targets(d: DomainData, rows: list[tuple[str, str]], space: LabelSpace) -> torch.Tensor:
    return torch.tensor([space.index(d.name, y) for _, y in rows], dtype=torch.long)


def _eval_rows(d: DomainData, eval_split: str) -> list[tuple[str, str]]:
    return d.test if eval_split == "test" else d.dev


def _router_rows(domains: list[DomainData], cap: int | None, seed: int) -> dict[str, list]:
    """Each domain's train split, or a stratified `cap` of it: what the router learns from."""
    return {d.name: d.train if cap is None else subsample(d.train, cap, seed=seed) for d in domains}


def _flop_sample(domains, eval_split: str, per_domain: int, seed: int):
    """A domain-balanced, representative batch of evaluation texts for FLOP counting."""
    rng = random.Random(seed)
    rows = []
    for d in domains:
        pool = _eval_rows(d, eval_split)
        rows.extend(rng.sample(pool, min(per_domain, len(pool))))
    return [t for t, _ in rows], rows


def _train_baseline(cfg, base, domains, experts, space, *, backbone, cache, should_stop):
    """One model of the same kind on all domains over union labels, parameter-matched."""
    target = sum(count_params(e) for e in experts)
    branch_params = 0
    if cfg.expert_kind == "branch":
        branch_params = sum(p.numel() for p in experts[0].layers.parameters())
    width = matched_mlp_hidden(
        cfg.expert_kind, target, hidden_size=backbone.hidden_size, n_labels=len(space),
        branch_params=branch_params,
    )
    union = DomainData(
        name="all",
        description="all domains, union labels (monolithic baseline)",
        labels=list(space.names),
        train=[(t, join_label(d.name, y)) for d in domains for t, y in d.train],
        dev=[(t, join_label(d.name, y)) for d in domains for t, y in d.dev],
    )
    result = train_expert(
        replace(base, mlp_hidden=width), backbone=backbone, cache=cache, domain=union,
        should_stop=should_stop,
    )
    model = result.expert.eval()
    info = {
        "mlp_hidden": width,
        "params": count_params(model),
        "experts_params": target,
        "note": (
            "same kind as the experts; MLP width chosen so its trainable parameters match all "
            "experts together" + (" (one set of branch layers, the rest in a wider head)"
                                  if cfg.expert_kind == "branch" else "")
        ),
        "dev": result.metrics,
    }
    return model, info


def _evaluate(cfg, domains, sets, experts, space, baseline, router, router_unreg, *, device):
    eval_split = "test" if cfg.eval_dir else "dev"
    """Oracle, baseline, routed MoE (both routers) and dense MoE, per domain and summarised."""
    bs = cfg.eval_batch_size
    oracle = {}
    for d, s, expert in zip(domains, sets, experts, strict=True):
        own = predict_expert(expert, s.trunks, batch_size=bs, device=device)
        cols = torch.tensor(space.indices(d.name, d.labels))
        oracle[d.name] = classification_report(s.targets, cols[own], cols.tolist())
    baseline = baseline.to(device)
    base_preds = [predict_expert(baseline, s.trunks, batch_size=bs, device=device) for s in sets]
    # The baseline's labels are the union names in the same order, so its ids are union ids.
    base_scores = score_union(sets, base_preds, space)
    names = [f"{e.config.domain}" for e in experts]
    moe = MixtureOfExperts(router.router, experts, space).to(device)
    moe_scores, moe_preds = evaluate_moe(moe, sets, top_k=cfg.top_k, batch_size=bs, device=device)
    dense_scores, _ = evaluate_moe(moe, sets, dense=True, batch_size=bs, device=device)
    unreg = MixtureOfExperts(router_unreg.router, experts, space).to(device)
    unreg_scores, unreg_preds = evaluate_moe(
        unreg, sets, top_k=cfg.top_k, batch_size=bs, device=device
    )
    per_domain = {
        d.name: {
            "n_eval": len(s.targets),
            "oracle": oracle[d.name],
            "baseline": base_scores["domains"][d.name],
            "moe": moe_scores["domains"][d.name],
            "moe_dense": dense_scores["domains"][d.name],
            "moe_unregularized": unreg_scores["domains"][d.name],
        }
        for d, s in zip(domains, sets, strict=True)
    }
    return {
        "domains": per_domain,
        "summary": {
            "oracle": summarize(oracle),
            "baseline": base_scores["summary"],
            "moe": moe_scores["summary"],
            "moe_dense": dense_scores["summary"],
            "moe_unregularized": unreg_scores["summary"],
        },
        "routing": balanced_routing(moe, sets, moe_preds, expert_names=names, seed=cfg.seed),
        "routing_unregularized": balanced_routing(
            unreg, sets, unreg_preds, expert_names=names, seed=cfg.seed
        ),
        "routing_by_length": routing_by_length(domains, eval_split, moe_preds, experts),
        "label_space": list(space.names),
    }
