from __future__ import annotations

import math

import pytest
import torch

from experts.ml.trunk import TrunkSet, expert_logits
from gating.ml.evaluate import EvalSet, balanced_routing, evaluate_moe
from gating.ml.moe import MixtureOfExperts
from gating.ml.router import Router, RouterConfig


def routed_pool(stub_expert):
    """Expert a (labels x, y) always says y; expert b (u, v) always says u; gate by feature 0."""
    a = stub_expert("a", ["x", "y"], logits=[0.0, 2.0])
    b = stub_expert("b", ["u", "v"], logits=[2.0, 0.0])
    router = Router(RouterConfig(hidden_size=4, n_experts=2, noise_std=0.0, input_layers=(1,)))
    with torch.no_grad():
        router.gate.weight.zero_()
        router.gate.bias.zero_()
        router.gate.weight[0, 0], router.gate.weight[1, 0] = 10.0, -10.0
    return MixtureOfExperts(router, [a, b]).eval()


def test_it_scores_routed_predictions_per_domain_in_the_union_space(stub_expert):
    moe = routed_pool(stub_expert)
    xa = torch.randn(4, 4)
    xa[:, 0] = torch.tensor([1.0, 1.0, 1.0, -1.0])  # last input of domain a is misrouted to b
    xb = torch.randn(2, 4)
    xb[:, 0] = -1.0
    space = moe.label_space
    sets = [
        EvalSet("a", TrunkSet({1: xa}), torch.tensor([space.index("a", "y")] * 3 + [0])),
        EvalSet("b", TrunkSet({1: xb}), torch.tensor([space.index("b", "u")] * 2)),
    ]
    scores, preds = evaluate_moe(moe, sets)
    # rows 0-2 go to expert a and say y (right); row 3 goes to b and says b:u (wrong)
    assert scores["domains"]["a"]["accuracy"] == pytest.approx(0.75)
    assert scores["domains"]["b"]["accuracy"] == 1.0
    assert scores["summary"]["accuracy"] == pytest.approx(0.875)
    routing = balanced_routing(moe, sets, preds, expert_names=["ea", "eb"])
    # balanced: 2 inputs per domain; routing accuracy counts top-1 expert's domain
    assert routing["n_inputs"] == 4
    assert 0.5 <= routing["accuracy"] <= 1.0
    assert sum(routing["load"].values()) == pytest.approx(1.0)
    assert routing["entropy"] < math.log(2)


def test_it_reports_the_dispatches_of_a_domain_mix_as_served(stub_expert):
    """Two experts of domain a, one of b; the router likes b best alone (0.4) but domain a
    more (0.6): the domain mix runs both a experts on every row, and the report says so."""
    a1 = stub_expert("a", ["x", "y"], logits=[0.0, 2.0])
    a2 = stub_expert("a", ["x", "y"], logits=[0.0, 1.0])
    b = stub_expert("b", ["u", "v"], logits=[2.0, 0.0], seed=1)
    router = Router(RouterConfig(hidden_size=4, n_experts=3, noise_std=0.0, input_layers=(1,)))
    with torch.no_grad():
        router.gate.weight.zero_()
        router.gate.bias.copy_(torch.log(torch.tensor([0.25, 0.35, 0.4])))
    moe = MixtureOfExperts(router, [a1, a2, b]).eval()
    space = moe.label_space
    sets = [EvalSet(d, TrunkSet({1: torch.randn(3, 4)}), torch.tensor([space.index(d, y)] * 3))
            for d, y in (("a", "y"), ("b", "u"))]
    _, top1 = evaluate_moe(moe, sets)
    picked = balanced_routing(moe, sets, top1, expert_names=["a1", "a2", "b"])
    assert picked["load"] == {"a1": 0.0, "a2": 0.0, "b": 1.0} and picked["accuracy"] == 0.5
    scores, mixed = evaluate_moe(moe, sets, mix="domain")
    assert scores["domains"]["a"]["accuracy"] == 1.0 and scores["domains"]["b"]["accuracy"] == 0
    served = balanced_routing(moe, sets, mixed, expert_names=["a1", "a2", "b"])
    assert served["load"] == {"a1": 0.5, "a2": 0.5, "b": 0.0}
    assert served["accuracy"] == 0.5  # domain a's rows hit, b's went to a
    assert mixed[0].lead.tolist() == [1, 1, 1]  # a2 weighs more (0.35 of 0.6)


def test_it_predicts_with_one_expert_over_its_own_labels(stub_expert):
    expert = stub_expert("a", ["x", "y"], logits=[0.0, 2.0])
    pred = expert_logits(expert, TrunkSet({1: torch.randn(5, 4)}), batch_size=2).argmax(1)
    assert pred.tolist() == [1] * 5


def test_it_pads_token_states_per_batch():
    tokens = [torch.randn(n, 4) for n in (3, 5, 2)]
    trunks = TrunkSet(pooled={1: torch.randn(3, 4)}, tokens={1: tokens})
    batch = trunks.batch([2, 0])
    assert batch.hidden[1].shape == (2, 3, 4)
    assert batch.mask.sum(1).tolist() == [2, 3]
    assert torch.equal(batch.hidden[1][0, :2], tokens[2])  # the same values, copied
    rows = torch.cat([r for r, _ in trunks.batches(2)])
    assert sorted(rows.tolist()) == [0, 1, 2]
