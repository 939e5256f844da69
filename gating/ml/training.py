"""Gating training, Django-free: the one function the TRAIN_GATING job and the benchmark call.

Given frozen experts and their domains' rows, it reads the trunk once (every expert's split
layer and the router's input layers), caches each expert's log-probs on every row, and fits the
router with the full objective, plus the same router without the balance and entropy terms for
comparison.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from experts.ml.artifact import load_expert
from experts.ml.common import ProgressFn, StopFn, report
from experts.ml.data import DomainData, Example, subsample
from experts.ml.features import FeatureCache
from experts.ml.surface import DEFAULT_BUCKETS, LATEST_SURFACE_VERSION
from experts.ml.trunk import TrunkSet, TrunkSpec, expert_tap
from gating.ml.bundle import GatingError, GatingModel
from gating.ml.moe import LabelSpace, MixtureOfExperts
from gating.ml.router_train import (
    RouterData,
    RouterTrainConfig,
    TrainedRouter,
    cache_expert_log_probs,
    train_router,
)

logger = logging.getLogger(__name__)


@dataclass
class ExpertSource:
    """Where one expert version's artifact lives and which platform domain it serves."""

    key: str  # stable name of the expert version (the platform's version id)
    domain: str  # platform domain name; overrides the manifest's, so the label space matches
    manifest: Path
    weights: Path


@dataclass
class GatingTrainConfig:
    top_k: int = 1  # experts per input at inference
    temperature: float = 1.0  # router softmax temperature
    noise_std: float = 1.0  # Shazeer noisy gating scale in training (0 = off)
    mlp_hidden: int = 0  # 0 = linear router
    lambda_bal: float = 0.01  # Switch load-balancing weight
    lambda_z: float = 1e-3  # ST-MoE z-loss weight
    lambda_h: float = 0.01  # MoECollab entropy regulariser weight
    epochs: int = 30  # upper bound; early stopping usually ends sooner
    lr: float = 1e-2  # AdamW learning rate
    batch_size: int = 256  # inputs per step
    patience: int = 4  # epochs without dev improvement before stopping
    seed: int = 0  # seeds sampling, init and noise
    samples_per_domain: int | None = None  # router inputs drawn per domain per epoch
    max_train_per_domain: int | None = None  # stratified cap on each domain's router rows
    # Layers whose pooled states the router reads; None = the deepest layer the experts tap,
    # plus the embedding layer (0): its bag-of-tokens cues (SMS spellings, question words)
    # are blurred by the last layer's sentence embedding, and it costs no transformer compute.
    router_layers: tuple[int, ...] | None = None
    # Hash buckets of the texts' surface features the router also reads (experts.ml.surface:
    # character n-grams and words as written); 0 = the trunk features only.
    router_surface_buckets: int = DEFAULT_BUCKETS
    # Which feature set (experts.ml.surface.SURFACE_VERSIONS): 2 adds the text's start and end
    # marks and shape tokens (length band, capitals, split-off punctuation) to the n-grams.
    router_surface_version: int = LATEST_SURFACE_VERSION
    # Which experts run on an input and with what weight (gating.ml.mixes.MIXES): "top_k" (its
    # top_k experts), "domain" (every expert of its most probable domain: several contributors'
    # experts of one domain mixed instead of one picked), "dense" (every expert).
    mix: str = "top_k"
    dev_fraction: float = 0.1  # share of train held out when a domain has no dev split
    compare_unregularized: bool = True  # also train lambda_bal = lambda_h = 0 for the report
    device: str = "cpu"  # "cpu", "cuda", "cuda:N"

    def router_config(self) -> RouterTrainConfig:
        return RouterTrainConfig(
            top_k=self.top_k, temperature=self.temperature, noise_std=self.noise_std,
            mlp_hidden=self.mlp_hidden, lambda_bal=self.lambda_bal, lambda_z=self.lambda_z,
            lambda_h=self.lambda_h, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
            patience=self.patience, seed=self.seed, device=self.device,
            samples_per_domain=self.samples_per_domain,
            surface_buckets=self.router_surface_buckets,
            surface_version=self.router_surface_version, mix=self.mix,
        )

    def input_layers(self, experts: Sequence[nn.Module]) -> tuple[int, ...]:
        if self.router_layers is not None:
            return tuple(self.router_layers)
        deepest = max(expert_tap(e)[0] for e in experts)
        return (deepest, 0) if deepest else (0,)


@dataclass
class TrainResult:
    model: GatingModel
    metrics: dict  # best epoch, dev accuracy, ... of each router
    curves: dict  # {"regularized": [...epochs], "unregularized": [...]}


def load_experts(sources: Sequence[ExpertSource], *, fingerprint: str, backbone=None
                 ) -> list[nn.Module]:
    """Load and check every expert artifact (any kinds, any split layers) in eval mode.

    LoRA experts (they need `backbone`) share one bank, so they run in one forward.
    """
    if not sources:
        raise GatingError("no experts to combine")
    experts, bank = [], None
    for src in sources:
        if backbone is not None and bank is None and _is_lora(src.manifest):
            from experts.ml.lora import LoraBank

            bank = LoraBank(backbone)
        module, _ = load_expert(src.manifest, src.weights, expected_fingerprint=fingerprint,
                                backbone=backbone, bank=bank)
        module.config.domain = src.domain
        experts.append(module.eval().requires_grad_(False))
    return experts


def _is_lora(manifest: Path) -> bool:
    from experts.ml.upload_checks import MAX_MANIFEST_BYTES, read_capped

    try:
        data = json.loads(read_capped(manifest, cap=MAX_MANIFEST_BYTES, what="manifest"))
    except (ValueError, OSError):
        return False  # load_expert reports what is wrong with it
    return isinstance(data, dict) and data.get("kind") == "lora"


def router_rows(domains: Sequence[DomainData], cfg: GatingTrainConfig
                ) -> tuple[dict[str, list[Example]], dict[str, list[Example]]]:
    """Router train and dev rows per domain; dev is a held-out slice of train when missing."""
    train, dev = {}, {}
    for d in domains:
        if not d.train:
            raise GatingError(f"domain {d.name!r} has no training rows")
        rows, dev[d.name] = d.dev_or_held_out(fraction=cfg.dev_fraction, seed=cfg.seed)
        cap = cfg.max_train_per_domain
        train[d.name] = rows if cap is None else subsample(rows, cap, seed=cfg.seed)
    return train, dev


def load_trunks(cache: FeatureCache, rows: dict[str, list[Example]], spec: TrunkSpec, *,
                on_progress: ProgressFn | None = None) -> TrunkSet:
    """The trunk features of every row, domain after domain."""
    texts = [t for d in rows for t, _ in rows[d]]
    return cache.load(texts, spec, on_progress=on_progress)


def router_data(experts: Sequence[nn.Module], keys: Sequence[str], space: LabelSpace,
                rows: dict[str, list[Example]], trunks: TrunkSet, layers: tuple[int, ...], *,
                device: torch.device) -> RouterData:
    """What the router learns from: its features, the targets and every expert's log-probs."""
    log_probs = cache_expert_log_probs(experts, trunks, device=device)
    for key, lp in zip(keys, log_probs, strict=True):
        bad = int((~torch.isfinite(lp)).any(dim=1).sum())
        if bad:
            raise GatingError(f"expert {key} gives non-finite outputs on {bad} of {len(lp)} "
                              "training inputs; remove it from the selection")
    return RouterData(
        features=trunks.features(layers),
        targets=torch.tensor([space.index(d, y) for d in rows for _, y in rows[d]]),
        domains=[d for d in rows for _ in rows[d]], expert_log_probs=log_probs, layers=layers,
        surface=trunks.surface,
    )


def train_gating(
    cfg: GatingTrainConfig, *, experts: Sequence[nn.Module], keys: Sequence[str],
    domains: Sequence[DomainData], cache: FeatureCache,
    on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
) -> TrainResult:
    """Cache the frozen experts' outputs on the domains' rows and fit the router(s)."""
    steps = 5.0
    if len(experts) < 2:
        raise GatingError("a gating model needs at least 2 experts to route between")
    if not 1 <= cfg.top_k <= len(experts):
        raise GatingError(f"top_k must be in 1..{len(experts)}, got {cfg.top_k}")
    device = torch.device(cfg.device)
    experts = [e.to(device).eval() for e in experts]
    space = LabelSpace.from_domains((d.name, d.labels) for d in domains)
    for e, key in zip(experts, keys, strict=True):
        unknown = [y for y in e.config.labels if f"{e.config.domain}:{y}" not in space.names]
        if unknown:
            raise GatingError(f"expert {key} outputs labels {unknown} that domain "
                              f"{e.config.domain!r} does not have")
    layers = cfg.input_layers(experts)
    spec = TrunkSpec.for_experts(experts, router_layers=layers,
                                 router_surface=cfg.router_surface_buckets,
                                 router_surface_version=cfg.router_surface_version)
    train_rows, dev_rows = router_rows(domains, cfg)

    def encoding(done: float, total: float, message: str) -> None:
        report(on_progress, should_stop, 1 + done / max(total, 1), steps, message)

    report(on_progress, should_stop, 1, steps, "encoding training texts")
    trunks = {name: load_trunks(cache, rows, spec, on_progress=encoding)
              for name, rows in (("train", train_rows), ("dev", dev_rows))}
    report(on_progress, should_stop, 2, steps, "running experts on training texts")
    train = router_data(experts, keys, space, train_rows, trunks["train"], layers, device=device)
    dev = router_data(experts, keys, space, dev_rows, trunks["dev"], layers, device=device)

    def epochs(base: float) -> ProgressFn:
        return lambda done, total, msg: report(on_progress, None, base + done / total, steps, msg)

    rcfg = cfg.router_config()
    report(on_progress, should_stop, 3, steps, "training the router")
    reg = train_router(rcfg, experts=experts, train=train, dev=dev, on_progress=epochs(3),
                       should_stop=should_stop)
    unreg: TrainedRouter | None = None
    if cfg.compare_unregularized:
        report(on_progress, should_stop, 4, steps, "training the unregularised router")
        unreg = train_router(replace(rcfg, lambda_bal=0.0, lambda_h=0.0), experts=experts,
                             train=train, dev=dev, on_progress=epochs(4),
                             should_stop=should_stop)
    moe = MixtureOfExperts(reg.router, experts, space).to("cpu").eval()
    model = GatingModel(
        moe=moe, keys=list(keys), fingerprint=cache.backbone.fingerprint,
        unregularized=unreg.router.to("cpu").eval() if unreg else None,
        config={**asdict(cfg), "router_layers": list(layers)},
    )
    metrics = {"regularized": reg.metrics, "unregularized": unreg.metrics if unreg else None,
               "n_train": len(train), "n_dev": len(dev)}
    curves = {"regularized": reg.history, "unregularized": unreg.history if unreg else []}
    report(on_progress, None, steps, steps, "router trained")
    return TrainResult(model=model, metrics=metrics, curves=curves)
