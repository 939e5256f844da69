from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from experts.ml.common import TrainingStopped
from experts.ml.trunk import TrunkBatch, TrunkSet
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
