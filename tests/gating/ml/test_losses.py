from __future__ import annotations

import math

import pytest
import torch

from gating.ml.losses import (
    entropy_regularizer,
    load_balancing_loss,
    nll_loss,
    router_objective,
    router_z_loss,
)
from gating.ml.moe import MoEOutput


def test_it_computes_the_nll_of_the_integrated_prediction():
    log_probs = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.9, 1e-9]]))
    loss = nll_loss(log_probs, torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(-(math.log(0.5) + math.log(0.9)) / 2, rel=1e-6)


def test_it_computes_the_switch_load_balancing_loss():
    probs = torch.tensor([[0.7, 0.3], [0.4, 0.6]])
    # even dispatch: f = (0.5, 0.5), P = (0.55, 0.45) -> 2 * (0.275 + 0.225) = 1.0
    assert load_balancing_loss(probs, torch.tensor([[0], [1]]), 2).item() == pytest.approx(1.0)
    # collapse on expert 0: f = (1, 0) -> 2 * 0.55 = 1.1
    assert load_balancing_loss(probs, torch.tensor([[0], [0]]), 2).item() == pytest.approx(1.1)
    # top-2 counts both memberships: f = (0.5, 0.5)
    both = torch.tensor([[0, 1], [1, 0]])
    assert load_balancing_loss(probs, both, 2).item() == pytest.approx(1.0)


def test_it_computes_the_router_z_loss():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    expected = (math.log(2.0) ** 2 + math.log(4.0) ** 2) / 2
    assert router_z_loss(logits).item() == pytest.approx(expected, rel=1e-6)


def test_it_rewards_confident_inputs_and_balanced_overall_routing():
    ln2 = math.log(2.0)
    confident_balanced = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert entropy_regularizer(confident_balanced).item() == pytest.approx(-ln2, abs=1e-6)
    uniform = torch.full((2, 2), 0.5)
    assert entropy_regularizer(uniform).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert entropy_regularizer(collapsed).item() == pytest.approx(0.0, abs=1e-6)
    mixed = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    # mean H = ln2 / 2; mean g = (0.75, 0.25)
    h_mean = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert entropy_regularizer(mixed).item() == pytest.approx(ln2 / 2 - h_mean, rel=1e-5)


def test_it_sums_the_router_objective_with_its_weights():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    out = MoEOutput(
        log_probs=torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.75]])),
        router_logits=logits,
        probs=probs,
        topk_idx=torch.tensor([[0], [1]]),
        topk_w=torch.ones(2, 1),
    )
    total, parts = router_objective(
        out, torch.tensor([0, 1]), lambda_bal=0.1, lambda_z=0.01, lambda_h=0.5
    )
    nll = -(math.log(0.5) + math.log(0.75)) / 2
    z = (math.log(2.0) ** 2 + math.log(4.0) ** 2) / 2
    expected = nll + 0.1 * 1.0 + 0.01 * z + 0.5 * -math.log(2.0)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert parts["nll"] == pytest.approx(nll, rel=1e-5)
    assert parts["balance"] == pytest.approx(1.0)
    assert set(parts) == {"total", "nll", "balance", "z", "entropy"}
