from __future__ import annotations

import pytest
import torch

from experts.ml.trunk import TrunkSet
from gating.ml.credit import cache_outputs, coalition_accuracy, moe_shapley, shapley
from gating.ml.evaluate import EvalSet, evaluate_moe
from gating.ml.mixes import MIXES
from gating.ml.moe import MixtureOfExperts
from gating.ml.router import Router, RouterConfig


def fixed_router(biases, hidden=4, top_k=1, weights=None):
    router = Router(RouterConfig(hidden_size=hidden, n_experts=len(biases), noise_std=0.0,
                                 input_layers=(1,), top_k=top_k))
    with torch.no_grad():
        router.gate.weight.zero_()
        if weights is not None:
            router.gate.weight.copy_(weights)
        router.gate.bias.copy_(torch.tensor(biases, dtype=torch.float32))
    return router


def test_it_shares_credit_equally_between_identical_experts_and_charges_a_junk_one(stub_expert):
    # a1 and a2 always say the right label y; junk always says x and the router prefers it
    a1 = stub_expert("a", ["x", "y"], logits=[0.0, 2.0])
    a2 = stub_expert("a", ["x", "y"], logits=[0.0, 2.0])
    junk = stub_expert("a", ["x", "y"], logits=[2.0, 0.0])
    moe = MixtureOfExperts(fixed_router([1.0, 1.0, 2.0]), [a1, a2, junk]).eval()
    y = moe.label_space.index("a", "y")
    sets = [EvalSet("a", TrunkSet({1: torch.randn(5, 4)}), torch.tensor([y] * 5))]
    out = moe_shapley(moe, sets, keys=["a1", "a2", "junk"], top_k=1,
                      groups={"alice": ["a1", "junk"], "bob": ["a2"]})
    # v: {a1}={a2}={a1,a2}=1, anything with junk = 0, empty = 0
    assert out["method"] == "exact"
    assert out["values"]["a1"] == pytest.approx(1 / 3)
    assert out["values"]["a2"] == pytest.approx(1 / 3)
    assert out["values"]["junk"] == pytest.approx(-2 / 3)
    assert sum(out["values"].values()) == pytest.approx(0.0)  # v(all) - v(empty)
    assert out["groups"]["alice"] == pytest.approx(-1 / 3)
    assert out["groups"]["bob"] == pytest.approx(1 / 3)


def test_it_gives_a_never_right_expert_no_positive_credit(stub_expert):
    a = stub_expert("a", ["x", "y"], logits=[0.0, 2.0])
    junk = stub_expert("a", ["x", "y"], logits=[2.0, 0.0])
    moe = MixtureOfExperts(fixed_router([2.0, 0.0]), [a, junk]).eval()
    y = moe.label_space.index("a", "y")
    sets = [EvalSet("a", TrunkSet({1: torch.randn(4, 4)}), torch.tensor([y] * 4))]
    out = moe_shapley(moe, sets, keys=["a", "junk"], top_k=1)
    assert out["values"]["junk"] <= 0.0
    assert out["values"]["a"] == pytest.approx(1.0)


def random_pool(stub_expert, n=6, top_k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    experts = [stub_expert("ab"[i % 2], ["x", "y", "z"], seed=seed + i) for i in range(n)]
    router = fixed_router(torch.randn(n, generator=g).tolist(), top_k=top_k,
                          weights=torch.randn(n, 4, generator=g))
    moe = MixtureOfExperts(router, experts).eval()
    space = moe.label_space
    sets = [EvalSet(d, TrunkSet({1: torch.randn(40, 4, generator=g)}),
                    torch.tensor([space.index(d, "xyz"[j % 3]) for j in range(40)]))
            for d in "ab"]
    return moe, sets


@pytest.mark.parametrize("mix", MIXES)
def test_it_scores_a_coalition_as_the_real_forward_with_the_others_excluded(stub_expert, mix):
    moe, sets = random_pool(stub_expert)
    cached = cache_outputs(moe, sets)
    for members in ([0, 1, 2, 3, 4, 5], [1, 2, 5], [3]):
        exclude = [i for i in range(6) if i not in members]
        scores, _ = evaluate_moe(moe, sets, top_k=2, mix=mix, exclude=exclude)
        got = coalition_accuracy(cached, members, top_k=2, columns=moe.columns(),
                                 n_labels=len(moe.label_space), mix=mix,
                                 domain_of=moe._domain_of)
        assert got == pytest.approx(scores["summary"]["accuracy"])


def test_it_credits_a_domains_experts_as_the_domain_mix_serves_them(stub_expert):
    # The router prefers p (0.73), which leans to the wrong label y; q is sure of the right x.
    p = stub_expert("a", ["x", "y"], logits=[0.0, 0.2])  # p(x) 0.45
    q = stub_expert("a", ["x", "y"], logits=[3.0, 0.0])  # p(x) 0.95
    moe = MixtureOfExperts(fixed_router([1.0, 0.0]), [p, q]).eval()
    x = moe.label_space.index("a", "x")
    sets = [EvalSet("a", TrunkSet({1: torch.randn(4, 4)}), torch.tensor([x] * 4))]
    # top-1: v({p}) = 0, v({q}) = 1, v({p, q}) = 0 (p serves): p -1/2, q +1/2
    top1 = moe_shapley(moe, sets, keys=["p", "q"], top_k=1)
    assert top1["values"] == pytest.approx({"p": -0.5, "q": 0.5})
    # the domain mix: v({p, q}) = 1 (0.73 * 0.45 + 0.27 * 0.95 = 0.59 on x): p 0, q 1
    mixed = moe_shapley(moe, sets, keys=["p", "q"], top_k=1, mix="domain")
    assert mixed["values"] == pytest.approx({"p": 0.0, "q": 1.0})
    moe.router.config.mix = "domain"  # the default is the router's own mix
    assert moe_shapley(moe, sets, keys=["p", "q"], top_k=1)["values"] == mixed["values"]


def test_it_sums_to_the_full_minus_the_empty_coalition(stub_expert):
    moe, sets = random_pool(stub_expert)
    out = moe_shapley(moe, sets, keys=[str(i) for i in range(6)], top_k=2)
    full, _ = evaluate_moe(moe, sets, top_k=2)
    assert sum(out["values"].values()) == pytest.approx(full["summary"]["accuracy"])


def test_it_samples_permutations_close_to_the_exact_values():
    weights = [0.3, 0.2, 0.1, 0.05, 0.0, -0.1]

    def value(s):  # additive part plus a pairwise interaction
        return sum(weights[i] for i in s) + (0.2 if {0, 1} <= s else 0.0)

    exact = shapley(value, 6)
    sampled = shapley(value, 6, exact_max=0, permutations=400, groups={"g": [0, 1]})
    assert sampled["method"] == "sampled"
    assert sum(sampled["values"]) == pytest.approx(value(frozenset(range(6))))
    for e, (lo, hi) in zip(exact["values"], sampled["ci95"], strict=True):
        assert lo - 1e-9 <= e <= hi + 1e-9
    lo, hi = sampled["groups_ci95"]["g"]
    assert lo - 1e-9 <= exact["values"][0] + exact["values"][1] <= hi + 1e-9
    assert exact["values"][0] == pytest.approx(0.4)
