"""End-to-end benchmark: per-domain experts vs a monolithic baseline vs the routed mixture.

Trains one expert per domain and a monolithic baseline of the same kind on the union of all
domains (as many trainable parameters as all experts together); then trains and evaluates the
mixture with the platform's own functions (gating.ml.training.train_gating and
gating.ml.evaluate.evaluate_gating, exactly what the TRAIN_GATING and EVALUATE jobs run), and
adds what only the benchmark has: the oracle, the baseline and timings. Everything is scored
per domain on its test split (from eval_dir, or test.jsonl in the domain folder), else on dev,
as the platform scores; model selection always uses dev.
"""
from __future__ import annotations

import logging
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from experts.ml.artifact import save_expert
from experts.ml.backbone import (
    BackboneConfig,
    load_backbone,
    plain_forward_throughput,
    resolve_device,
)
from experts.ml.common import ProgressFn, StopFn, check_stop
from experts.ml.data import DomainData, load_domain_dir, subsample
from experts.ml.features import FeatureCache
from experts.ml.inference import open_encoder
from experts.ml.lora import save_lora_artifact
from experts.ml.trunk import TrunkSpec, expert_logits
from gating.ml.bundle import save_bundle
from gating.ml.evaluate import eval_rows, eval_sets, evaluate_gating, score_union
from gating.ml.metrics import classification_report, summarize
from gating.ml.moe import LabelSpace, join_label
from gating.ml.training import GatingTrainConfig, train_gating
from training.ml.expert_train import ExpertTrainConfig, train_expert

logger = logging.getLogger(__name__)

# Texts of the plain transformers forward that a cold run's encoding is compared with: spread
# over the sorted-by-domain set, so the sample has every domain's lengths.
ENCODE_REFERENCE_TEXTS = 256
STAGES = ("features", "experts", "baseline", "router", "evaluate")


@dataclass
class BenchmarkConfig:
    data_dir: str  # folder with one sub-folder per domain (domain.json, train/dev.jsonl)
    eval_dir: str | None = None  # folder with <domain>/test.jsonl; None = the domain folders'
    expert_kind: str = "head"  # "head", "branch" or "lora"
    top_k: int = 1  # experts per input at inference
    max_train_per_domain: int | None = None  # stratified cap on each train split
    # router training rows per domain, a stratified sample of the whole train split (a superset
    # of the experts' rows when larger than max_train_per_domain: on the platform the router
    # reads the domain's dataset, whatever the experts were trained on); None = the experts' rows
    router_max_per_domain: int | None = None
    device: str = "auto"  # "auto", "cpu", "cuda[:n]"
    seed: int = 0  # one seed for sampling, experts, baseline and routers
    cache_dir: str = "var/feature-cache"  # FeatureCache root (shared across runs)
    # backbone forward for encoding (experts.ml.inference.ENCODE_BACKENDS or "auto"), as the
    # platform's MOECOLLAB_ENCODE_BACKEND
    encode_backend: str = "auto"
    split_layer: int | None = None  # None = expert_train's default for the kind
    expert_epochs: int | None = None  # None = expert_train's default for the kind
    router_layers: tuple[int, ...] | None = None  # None = the platform's default (see training)
    router_mlp_hidden: int = 0  # hidden width of an MLP router; 0 = linear (the default)
    # hash buckets of the texts' surface features the router reads; None = the platform's
    # default (GatingTrainConfig), 0 = trunk features only
    router_surface_buckets: int | None = None
    # Small matrices (heads, router) run several times faster on one thread than on two when the
    # cores are shared (measured 1.5 s vs 13.9 s per sentiment head epoch); None = leave as is.
    small_model_threads: int | None = 1
    flops_per_domain: int = 16  # inputs per domain in the representative FLOP-count sample
    eval_batch_size: int = 128  # inputs per MoE forward at evaluation
    # Where to keep what was trained (None: nothing is written): experts/<domain>/ artifacts
    # that upload to the platform as they are, and gating.safetensors, a platform bundle.
    save_dir: str | None = None


def gating_config(cfg: BenchmarkConfig, device: torch.device) -> GatingTrainConfig:
    """The platform's gating training settings with the benchmark's router choices."""
    gating = GatingTrainConfig(
        top_k=cfg.top_k, seed=cfg.seed, device=str(device),
        max_train_per_domain=cfg.router_max_per_domain, router_layers=cfg.router_layers,
        mlp_hidden=cfg.router_mlp_hidden,
    )
    if cfg.router_surface_buckets is not None:
        gating = replace(gating, router_surface_buckets=cfg.router_surface_buckets)
    return gating


def load_domain_views(cfg: BenchmarkConfig) -> tuple[list[DomainData], list[DomainData]]:
    """(the experts' domains, the router's domains): every domain folder under data_dir, sorted
    by name, each read once.

    Both are stratified samples of the whole train split with the same seed, so the router's
    rows contain the experts' when router_max_per_domain is the larger cap (on the platform the
    router reads the domain's dataset, whatever the experts were trained on). Otherwise the two
    are the same list (train_gating applies a smaller router cap itself). The test split comes
    from eval_dir when given.
    """
    root = Path(cfg.data_dir)
    folders = sorted(p for p in root.iterdir() if (p / "domain.json").is_file())
    if not folders:
        raise FileNotFoundError(f"no domain folders (with domain.json) in {root}")
    full = [load_domain_dir(folder, eval_file=Path(cfg.eval_dir) / folder.name / "test.jsonl"
                            if cfg.eval_dir else None)
            for folder in folders]

    def capped(cap: int | None) -> list[DomainData]:
        if cap is None:
            return full
        return [replace(d, train=subsample(d.train, cap, seed=cfg.seed)) for d in full]

    experts = capped(cfg.max_train_per_domain)
    cap, expert_cap = cfg.router_max_per_domain, cfg.max_train_per_domain
    if cap is None or expert_cap is None or cap <= expert_cap:
        return experts, experts
    return experts, capped(cap)


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
    should_stop: StopFn | None = None,
) -> dict:
    """Run the whole benchmark and return the report (see docs/benchmarks.md for every key)."""
    t_start = time.perf_counter()
    timer = _Timer()
    device = resolve_device(cfg.device)

    def progress(stage: str) -> None:
        check_stop(should_stop, f"before the benchmark's {stage} stage")
        if on_progress is not None:
            on_progress(STAGES.index(stage), len(STAGES), stage)

    domains, routed = load_domain_views(cfg)
    backbone = load_backbone(BackboneConfig(device=str(device)))
    cache = feature_cache(cfg, backbone)
    base = ExpertTrainConfig(
        kind=cfg.expert_kind, seed=cfg.seed, device=str(device), split_layer=cfg.split_layer,
        epochs=cfg.expert_epochs,
    ).resolved(backbone.num_layers)
    small = cfg.small_model_threads if cfg.expert_kind == "head" else None
    gating_cfg = gating_config(cfg, device)

    progress("features")
    with timer.stage("features"):
        # Every text once, in one backbone pass per shard, for every layer anything reads.
        split = base.split_layer
        router_layers = cfg.router_layers or ((split, 0) if split else (0,))
        lora = cfg.expert_kind == "lora"  # LoRA experts read token ids, not trunk states
        spec = TrunkSpec.of(pooled=[*([] if lora else [split]), *router_layers],
                            tokens=[split] if cfg.expert_kind == "branch" else [])
        texts = [t for d in domains for rows in (d.train, d.dev, eval_rows(d)[0])
                 for t, _ in rows]
        if routed is not domains:
            texts += [t for d in routed for t, _ in d.train]
        unique = list(dict.fromkeys(texts))
        cache.load(unique, spec)
        n_encoded = cache.encoded_count
    encoding = {"backend": cache.backend, "texts": n_encoded,
                "seconds": round(timer.times["features"], 2)}
    if n_encoded:  # a cold run: the encoder's throughput against the plain forward's
        encoding["texts_per_s"] = n_encoded / max(timer.times["features"], 1e-9)
        with timer.stage("encode_reference"):
            sample = unique[:: max(1, len(unique) // ENCODE_REFERENCE_TEXTS)]
            encoding["reference_texts_per_s"] = plain_forward_throughput(backbone, sample)
        encoding["ratio"] = encoding["texts_per_s"] / encoding["reference_texts_per_s"]

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
    with timer.stage("train_router"), _threads(cfg.small_model_threads):
        gating = train_gating(gating_cfg, experts=experts, keys=[d.name for d in domains],
                              domains=routed, cache=cache, should_stop=should_stop)
    model = gating.model
    if cfg.save_dir is not None:
        _save(Path(cfg.save_dir), domains, trained, model, backbone=backbone)

    progress("evaluate")
    with timer.stage("evaluate"), _threads(small):
        sets, used = eval_sets(model, domains, cache)
        evaluation = evaluate_gating(
            model, cache=cache, domains=domains, sets=sets, should_stop=should_stop,
            flops_per_domain=cfg.flops_per_domain, batch_size=cfg.eval_batch_size,
            device=device, seed=cfg.seed,
        )
        report = _scores(domains, sets, experts, space, baseline, evaluation,
                         batch_size=cfg.eval_batch_size, device=device)
    timer.times["total"] = time.perf_counter() - t_start
    splits = set(used.values())
    report.update(
        eval_split=splits.pop() if len(splits) == 1 else "mixed",
        eval_split_by_domain=used,
        compute=evaluation["compute"],
        credit=evaluation["credit"],
        shapley=evaluation["shapley"],
        shapley_ci95=evaluation["shapley_ci95"],
        shapley_method=evaluation["shapley_method"],
        timings_s={k: round(v, 2) for k, v in timer.times.items()},
        config=asdict(cfg),
        expert_train_config=asdict(base),
        gating_train_config=model.config,
        router_train={"regularized": gating.metrics["regularized"],
                      "unregularized": gating.metrics["unregularized"],
                      "n_train": gating.metrics["n_train"], "n_dev": gating.metrics["n_dev"]},
        router_history=gating.curves,
        experts={d.name: trained[d.name].metrics for d in domains},
        baseline_info=baseline_info,
        environment={
            "device": str(device), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "backbone": backbone.name, "backbone_fingerprint": backbone.fingerprint,
            "split_layer": split, "router_layers": list(model.moe.router.config.input_layers),
            "router_surface_buckets": model.moe.router.config.surface_buckets,
            "texts_encoded": n_encoded,
        },
        encoding=encoding,
    )
    return report


def feature_cache(cfg: BenchmarkConfig, backbone) -> FeatureCache:
    """The feature cache on the encoding backend the platform's workers would use."""
    encoder = open_encoder(backbone, cfg.encode_backend, cache_dir=cfg.cache_dir,
                           threads=torch.get_num_threads())
    return FeatureCache(cfg.cache_dir, backbone, encoder=encoder)


def _train_baseline(cfg, base, domains, experts, space, *, backbone, cache, should_stop):
    """One model of the same kind on all domains over union labels, parameter-matched."""
    if cfg.expert_kind == "lora":
        return _train_lora_baseline(base, domains, space, backbone=backbone, cache=cache,
                                    should_stop=should_stop)
    target = sum(count_params(e) for e in experts)
    branch_params = 0
    if cfg.expert_kind == "branch":
        branch_params = sum(p.numel() for p in experts[0].layers.parameters())
    width = matched_mlp_hidden(
        cfg.expert_kind, target, hidden_size=backbone.hidden_size, n_labels=len(space),
        branch_params=branch_params,
    )
    result = train_expert(
        replace(base, mlp_hidden=width), backbone=backbone, cache=cache,
        domain=_union(domains, space), should_stop=should_stop,
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


def _union(domains, space) -> DomainData:
    return DomainData(
        name="all",
        description="all domains, union labels (monolithic baseline)",
        labels=list(space.names),
        train=[(t, join_label(d.name, y)) for d in domains for t, y in d.train],
        dev=[(t, join_label(d.name, y)) for d in domains for t, y in d.dev],
    )


def _train_lora_baseline(base, domains, space, *, backbone, cache, should_stop):
    """One LoRA adapter over all domains with the union label head; its rank is the experts'
    rank times their number, so its adapter has as many parameters as all of theirs."""
    rank = base.lora_r * len(domains)
    result = train_expert(replace(base, lora_r=rank), backbone=backbone, cache=cache,
                          domain=_union(domains, space), should_stop=should_stop)
    info = {"lora_r": rank, "note": f"one LoRA (rank {rank} = {base.lora_r} x {len(domains)} "
            "experts) with one head over the union labels", "dev": result.metrics}
    return result.expert.eval(), info


def _save(folder: Path, domains, trained, model, *, backbone) -> None:
    for d in domains:
        t = trained[d.name]
        save = save_lora_artifact if t.config.kind == "lora" else save_expert
        save(t.expert, folder / "experts" / d.name, backbone=backbone,
             training={**t.training, "trained_by": "moe_benchmark"}, metrics=t.metrics)
    save_bundle(model, folder / "gating.safetensors")


def _scores(domains, sets, experts, space, baseline, evaluation, *, batch_size, device):
    """Oracle and baseline next to the platform's evaluation, per domain and summarised."""
    oracle = {}
    for d, s, expert in zip(domains, sets, experts, strict=True):
        own = expert_logits(expert, s.trunks, batch_size=batch_size, device=device).argmax(1)
        cols = torch.tensor(space.indices(d.name, d.labels))
        oracle[d.name] = classification_report(s.targets, cols[own], cols.tolist())
    baseline = baseline.to(device)
    # The baseline's labels are the union names in the same order, so its ids are union ids.
    base_preds = [expert_logits(baseline, s.trunks, batch_size=batch_size, device=device)
                  .argmax(1) for s in sets]
    base_scores = score_union(sets, base_preds, space)
    unreg = evaluation.get("unregularized", {})
    per_domain = {
        d.name: {
            "n_eval": len(s.targets),
            "oracle": oracle[d.name],
            "baseline": base_scores["domains"][d.name],
            "moe": evaluation["domains"][d.name],
            "moe_dense": evaluation["dense"]["domains"][d.name],
            "moe_unregularized": unreg["domains"][d.name],
        }
        for d, s in zip(domains, sets, strict=True)
    }
    return {
        "domains": per_domain,
        "summary": {
            "oracle": summarize(oracle),
            "baseline": base_scores["summary"],
            "moe": evaluation["summary"],
            "moe_dense": evaluation["dense"]["summary"],
            "moe_unregularized": unreg["summary"],
        },
        "routing": evaluation["routing"],
        "routing_unregularized": unreg["routing"],
        "routing_by_length": evaluation["routing_by_length"],
        "label_space": list(space.names),
    }
