from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from experts.ml.common import TrainingStopped
from experts.ml.surface import SurfaceBag
from experts.ml.trunk import LayeredBatch, TrunkBatch, TrunkSet
from gating.ml.moe import LabelSpace, MixtureOfExperts
from gating.ml.router_train import (
    RouterData,
    RouterTrainConfig,
    balanced_epoch,
    cache_expert_log_probs,
    evaluate_cached,
    train_router,
)

HIDDEN = 8


class OracleExpert(nn.Module):
    """Knows its domain's label from feature `slot`: a perfect expert on its own inputs."""

    needs_tokens = False

    def __init__(self, domain: str, labels: list[str], slot: int) -> None:
        super().__init__()
        self.config = SimpleNamespace(domain=domain, labels=labels, split_layer=1)
        self.slot = slot
        self.calls = 0

    def forward(self, trunk: TrunkBatch) -> torch.Tensor:
        self.calls += 1
        sign = (trunk.pooled[:, self.slot] > 0).float()
        return torch.stack([3 * (1 - sign), 3 * sign], dim=1)  # (B, 2)


def make_task(n_per_domain: int, seed: int):
    """Two domains told apart by feature 0 (separable); labels by feature 1 or 2."""
    g = torch.Generator().manual_seed(seed)
    experts = [OracleExpert("a", ["neg", "pos"], 1), OracleExpert("b", ["no", "yes"], 2)]
    space = LabelSpace.from_experts(experts)
    x = torch.randn(2 * n_per_domain, HIDDEN, generator=g)
    domains = ["a"] * n_per_domain + ["b"] * n_per_domain
    x[:n_per_domain, 0] = x[:n_per_domain, 0].abs() + 0.5
    x[n_per_domain:, 0] = -x[n_per_domain:, 0].abs() - 0.5
    targets = []
    for row, d in enumerate(domains):
        slot = 1 if d == "a" else 2
        labels = ["neg", "pos"] if d == "a" else ["no", "yes"]
        targets.append(space.index(d, labels[int(x[row, slot] > 0)]))
    trunks = TrunkSet(pooled={1: x})
    data = RouterData(
        features=x, targets=torch.tensor(targets), domains=domains,
        expert_log_probs=cache_expert_log_probs(experts, trunks, batch_size=64),
    )
    return experts, data


def test_it_learns_to_route_a_separable_task_and_lowers_the_loss():
    experts, train = make_task(200, seed=0)
    _, dev = make_task(100, seed=1)
    cfg = RouterTrainConfig(epochs=8, lr=0.05, batch_size=64, patience=8, seed=0)
    progress = []
    trained = train_router(
        cfg, experts=experts, train=train, dev=dev,
        on_progress=lambda done, total, msg: progress.append((done, total)),
    )
    h = trained.history
    assert h[-1]["train_nll"] < h[0]["train_nll"]
    assert h[-1]["train_total"] < h[0]["train_total"]
    assert trained.metrics["dev_accuracy"] > 0.95
    assert progress[0] == (1, 8)
    assert {"train_balance", "train_z", "train_entropy", "dev_accuracy"} <= set(h[0])
    # the real routed forward agrees with the cached evaluation used for early stopping
    moe = MixtureOfExperts(trained.router, experts).eval()
    out = moe(TrunkBatch(pooled=dev.features))
    real = (out.log_probs.argmax(1) == dev.targets).float().mean().item()
    cached = evaluate_cached(
        trained.router, dev, moe.columns(), len(moe.label_space), top_k=1
    )
    assert real == pytest.approx(cached["accuracy"], abs=1e-6)  # balanced dev: same mean


def test_it_is_reproducible_with_a_fixed_seed():
    experts, train = make_task(50, seed=0)
    cfg = RouterTrainConfig(epochs=2, batch_size=32, seed=3)
    a = train_router(cfg, experts=experts, train=train, dev=train)
    b = train_router(cfg, experts=experts, train=train, dev=train)
    # the same computation twice in one process: the same bytes
    assert torch.equal(a.router.gate.weight, b.router.gate.weight)


def test_it_stops_when_asked():
    experts, train = make_task(50, seed=0)
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(TrainingStopped):
        train_router(
            RouterTrainConfig(epochs=50, batch_size=16), experts=experts, train=train,
            dev=train, should_stop=stop,
        )
    assert len(calls) == 4


def test_it_samples_every_domain_equally_per_epoch():
    domains = ["big"] * 10 + ["small"] * 3
    idx = balanced_epoch(domains, None, torch.Generator().manual_seed(0))
    picked = [domains[i] for i in idx.tolist()]
    assert picked.count("big") == 10 and picked.count("small") == 10
    assert set(idx[[domains[i] == "big" for i in idx.tolist()]].tolist()) == set(range(10))


def _spelling_task(n_per_domain: int, seed: int):
    """Domains the trunk features cannot tell apart (the same noise) but their spelling can:
    texting shorthand vs review prose."""
    g = torch.Generator().manual_seed(seed)
    experts = [OracleExpert("sms", ["ham", "spam"], 1), OracleExpert("review", ["neg", "pos"], 2)]
    space = LabelSpace.from_experts(experts)
    sms = ["ok lar", "c u 2nite", "k thx", "wat r u doin", "gr8 c u l8r", "u wan 2 come"]
    review = ["a charming film", "it 's dull", "the plot is thin", "warm and funny",
              "a tedious mess", "sharp , witty writing"]
    x = torch.randn(2 * n_per_domain, HIDDEN, generator=g)
    texts = [sms[i % len(sms)] for i in range(n_per_domain)] + [
        review[i % len(review)] for i in range(n_per_domain)]
    domains = ["sms"] * n_per_domain + ["review"] * n_per_domain
    targets = [space.index(d, (["ham", "spam"] if d == "sms" else ["neg", "pos"])[
        int(x[row, 1 if d == "sms" else 2] > 0)]) for row, d in enumerate(domains)]
    trunks = TrunkSet(pooled={1: x})
    data = RouterData(features=x, targets=torch.tensor(targets), domains=domains,
                      expert_log_probs=cache_expert_log_probs(experts, trunks, batch_size=64),
                      layers=(1,), surface=SurfaceBag.of_texts(texts, 1 << 12))
    return experts, data, texts


def test_a_surface_router_routes_by_spelling_where_the_trunk_features_cannot():
    experts, train, _ = _spelling_task(120, seed=0)
    _, dev, texts = _spelling_task(60, seed=1)
    cfg = RouterTrainConfig(epochs=6, lr=0.05, batch_size=32, patience=6, seed=0)
    plain = train_router(cfg, experts=experts, train=train, dev=dev)
    surface = train_router(replace(cfg, surface_buckets=1 << 12), experts=experts,
                           train=train, dev=dev)
    assert plain.metrics["dev_accuracy"] < 0.75  # noise features: about chance routing
    assert surface.metrics["dev_accuracy"] > 0.95
    # the real MoE forward reads the bag from the trunk batch and agrees with the cached path
    moe = MixtureOfExperts(surface.router, experts).eval()
    batch = LayeredBatch(pooled={1: dev.features}, surface=dev.surface)
    routed = moe(batch).topk_idx[:, 0]
    assert routed.tolist() == [0 if d == "sms" else 1 for d in dev.domains]
    assert batch.surface.buckets == 1 << 12 and len(texts) == len(dev)


def test_a_surface_router_needs_the_bags_of_its_inputs():
    experts, train, _ = _spelling_task(10, seed=0)
    bare = replace(train, surface=None)
    with pytest.raises(ValueError, match="needs the surface features"):
        train_router(RouterTrainConfig(epochs=1, surface_buckets=1 << 12), experts=experts,
                     train=bare, dev=bare)


def test_a_surface_router_is_trained_on_bags_of_its_own_feature_version():
    experts, train, _ = _spelling_task(10, seed=0)
    texts = ["ok lar"] * len(train)
    old = replace(train, surface=SurfaceBag.of_texts(texts, 1 << 12, version=1))
    with pytest.raises(ValueError, match="version 2 was given bags of version 1 "):
        train_router(RouterTrainConfig(epochs=1, surface_buckets=1 << 12), experts=experts,
                     train=old, dev=train)
    trained = train_router(RouterTrainConfig(epochs=1, surface_buckets=1 << 12,
                                             surface_version=1),
                           experts=experts, train=old, dev=old)
    assert trained.router.config.surface_version == 1
