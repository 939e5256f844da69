from __future__ import annotations

import math

import pytest
import torch

from gating.ml.mixes import MIXES
from gating.ml.moe import LabelSpace, MixtureOfExperts, gate_weights, integrate, mix_weights
from gating.ml.router import Router, RouterConfig


def fixed_router(gate_probs, hidden=4, top_k=1, mix="top_k"):
    """A router whose gate ignores the input: softmax(bias) = gate_probs."""
    router = Router(
        RouterConfig(hidden_size=hidden, n_experts=len(gate_probs), top_k=top_k, noise_std=0.0,
                     mix=mix)
    )
    with torch.no_grad():
        router.gate.weight.zero_()
        router.gate.bias.copy_(torch.log(torch.tensor(gate_probs)))
    return router.eval()


def sign_router(hidden=4):
    """Routes a row to expert 0 when pooled[:, 0] > 0, else to expert 1."""
    router = Router(RouterConfig(hidden_size=hidden, n_experts=2, noise_std=0.0))
    with torch.no_grad():
        router.gate.weight.zero_()
        router.gate.bias.zero_()
        router.gate.weight[0, 0] = 10.0
        router.gate.weight[1, 0] = -10.0
    return router.eval()


def logs(*p):
    return [math.log(v) for v in p]


def test_it_builds_a_stable_union_label_space():
    space = LabelSpace.from_domains([("a", ["x", "y"]), ("b", ["u"]), ("a", ["y", "z"])])
    assert space.names == ("a:x", "a:y", "b:u", "a:z")
    assert space.indices("a", ["z", "x"]) == [3, 0]
    assert space.domain_indices("a") == [0, 1, 3]
    assert space.domain_of(2) == "b"


def test_it_mixes_experts_with_different_label_sets_in_the_union_space(trunk_cls, stub_expert):
    a = stub_expert("a", ["x", "y"], logits=logs(0.25, 0.75))
    b = stub_expert("b", ["u", "v", "w"], logits=logs(0.2, 0.3, 0.5))
    moe = MixtureOfExperts(fixed_router([0.6, 0.4]), [a, b]).eval()
    trunk = trunk_cls(pooled=torch.randn(3, 4))
    dense = moe(trunk, mix="dense").log_probs.exp()
    expected = torch.tensor([0.6 * 0.25, 0.6 * 0.75, 0.4 * 0.2, 0.4 * 0.3, 0.4 * 0.5])
    assert torch.allclose(dense, expected.expand(3, 5), atol=1e-6)
    assert torch.allclose(moe(trunk, top_k=2).log_probs.exp(), dense, atol=1e-6)
    top1 = moe(trunk, top_k=1).log_probs.exp()
    assert torch.allclose(top1, torch.tensor([0.25, 0.75, 0, 0, 0]).expand(3, 5), atol=1e-6)


def test_it_adds_up_two_experts_serving_one_domain(trunk_cls, stub_expert):
    a1 = stub_expert("a", ["x", "y"], logits=logs(0.5, 0.5))
    a2 = stub_expert("a", ["y", "z"], logits=logs(0.1, 0.9))
    moe = MixtureOfExperts(fixed_router([0.7, 0.3]), [a1, a2]).eval()
    assert moe.label_space.names == ("a:x", "a:y", "a:z")
    p = moe(trunk_cls(pooled=torch.randn(2, 4)), top_k=2).log_probs.exp()
    expected = torch.tensor([0.7 * 0.5, 0.7 * 0.5 + 0.3 * 0.1, 0.3 * 0.9])
    assert torch.allclose(p, expected.expand(2, 3), atol=1e-6)


def test_it_mixes_every_expert_of_the_most_probable_domain_within_domain(
    trunk_cls, stub_expert
):
    a1 = stub_expert("a", ["x", "y"], logits=logs(0.5, 0.5))
    a2 = stub_expert("a", ["y", "z"], logits=logs(0.1, 0.9))
    b = stub_expert("b", ["u", "v"], logits=logs(0.2, 0.8), seed=1)
    # b is the single most probable expert, domain a the most probable domain (0.6 > 0.4)
    moe = MixtureOfExperts(fixed_router([0.2, 0.4, 0.4]), [a1, a2, b]).eval()
    trunk = trunk_cls(pooled=torch.randn(3, 4))
    p = moe(trunk, mix="domain").log_probs.exp()  # a:x, a:y, a:z, b:u, b:v
    w1, w2 = 0.2 / 0.6, 0.4 / 0.6
    expected = torch.tensor([w1 * 0.5, w1 * 0.5 + w2 * 0.1, w2 * 0.9, 0.0, 0.0])
    assert torch.allclose(p, expected.expand(3, 5), atol=1e-6)
    assert b.calls == 0  # the other domain's expert does not run
    left_out = moe(trunk, mix="domain", exclude=[1]).log_probs.exp()  # a1 vs b: 1/3 vs 2/3
    assert torch.allclose(left_out[0], torch.tensor([0.0, 0.0, 0.0, 0.2, 0.8]), atol=1e-6)
    # one expert per domain: within the domain is top-1
    single = MixtureOfExperts(fixed_router([0.3, 0.7]), [a1, b]).eval()
    assert torch.allclose(single(trunk, mix="domain").log_probs,
                          single(trunk).log_probs, atol=1e-6)


def test_it_serves_the_routers_own_mix_and_says_which_experts_ran(trunk_cls, stub_expert):
    a1 = stub_expert("a", ["x", "y"], logits=logs(0.5, 0.5))
    a2 = stub_expert("a", ["y", "z"], logits=logs(0.1, 0.9))
    b = stub_expert("b", ["u", "v"], logits=logs(0.2, 0.8), seed=1)
    moe = MixtureOfExperts(fixed_router([0.2, 0.4, 0.4], mix="domain"), [a1, a2, b]).eval()
    trunk = trunk_cls(pooled=torch.randn(2, 4))
    out = moe(trunk)  # the router's mix: domain a's two experts
    assert torch.allclose(out.log_probs, moe(trunk, mix="domain").log_probs)
    assert out.runs.tolist() == [[True, True, False]] * 2
    (first, w_first), (second, w_second) = out.chosen(0)
    assert (first, second) == (1, 0)  # heaviest first
    assert (w_first, w_second) == pytest.approx((0.4 / 0.6, 0.2 / 0.6), abs=1e-6)
    # a call that asks for a top_k gets top-k routing: the single most probable expert
    picked = moe(trunk, top_k=1)
    assert [e for e, _ in picked.chosen(0)] in ([1], [2])
    assert picked.runs.sum(dim=1).tolist() == [1, 1]
    with pytest.raises(ValueError, match="mix must be one of top_k, domain, dense, got 'soft'"):
        moe(trunk, mix="soft")
    with pytest.raises(ValueError, match="got 'soft'"):
        RouterConfig(hidden_size=4, n_experts=3, mix="soft")


def test_it_never_runs_an_expert_no_row_was_routed_to(trunk_cls, stub_expert):
    a, b = stub_expert("a", ["x", "y"]), stub_expert("b", ["u", "v"], seed=1)
    moe = MixtureOfExperts(sign_router(), [a, b]).eval()
    pooled = torch.randn(6, 4)
    pooled[:, 0] = pooled[:, 0].abs() + 0.5  # every row goes to expert 0
    out = moe(trunk_cls(pooled=pooled))
    assert (a.calls, b.calls) == (1, 0)
    assert a.rows_seen == 6
    assert torch.all(out.log_probs[:, 2:].exp() < 1e-6)


def test_it_dispatches_each_row_to_its_top_k_experts_only(trunk_cls, stub_expert):
    a, b = stub_expert("a", ["x", "y"]), stub_expert("b", ["u", "v"], seed=1)
    moe = MixtureOfExperts(sign_router(), [a, b]).eval()
    pooled = torch.randn(8, 4)
    pooled[:, 0] = torch.tensor([1.0, -1, 1, -1, 1, 1, -1, 1])
    moe(trunk_cls(pooled=pooled))
    assert (a.rows_seen, b.rows_seen) == (5, 3)
    moe(trunk_cls(pooled=pooled), mix="dense")
    assert (a.rows_seen, b.rows_seen) == (13, 11)  # dense runs both on all 8 rows
    assert (a.calls, b.calls) == (2, 2)


def test_it_gives_token_experts_only_their_rows_tokens(trunk_cls, stub_expert):
    head = stub_expert("a", ["x", "y"])
    branch = stub_expert("b", ["u", "v"], needs_tokens=True, seed=1)
    moe = MixtureOfExperts(sign_router(), [head, branch]).eval()
    pooled = torch.randn(4, 4)
    pooled[:, 0] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    hidden = torch.randn(4, 7, 4)
    mask = torch.zeros(4, 7, dtype=torch.long)
    for row, length in enumerate([7, 3, 6, 5]):
        mask[row, :length] = 1
    moe(trunk_cls(pooled=pooled, hidden=hidden, mask=mask))
    assert head.last_trunk.hidden is None
    seen = branch.last_trunk
    assert seen.hidden.shape == (2, 5, 4)  # rows 1 and 3, trimmed to their longest (5)
    assert torch.equal(seen.hidden, hidden[[1, 3], :5])


@pytest.mark.parametrize("mix", MIXES)
def test_it_matches_the_cached_integration_in_every_mix(trunk_cls, stub_expert, mix):
    experts = [stub_expert(d, ["p", "q", "r"][: 2 + i % 2], seed=i) for i, d in enumerate("abca")]
    router = Router(RouterConfig(hidden_size=4, n_experts=4, noise_std=0.0, top_k=2)).eval()
    moe = MixtureOfExperts(router, experts).eval()
    trunk = trunk_cls(pooled=torch.randn(10, 4))
    cached = [moe.expert_log_probs(i, trunk) for i in range(4)]
    out = moe(trunk, mix=mix)
    w = mix_weights(out.probs, top_k=2, mix=mix, domain_of=moe._domain_of)
    assert torch.allclose(w, out.weights, atol=1e-6)
    mixed = integrate(cached, w, moe.columns(), len(moe.label_space))
    assert torch.allclose(mixed, out.log_probs, atol=1e-5)
    if mix == "top_k":  # the training path's gate weights are the same
        assert torch.allclose(gate_weights(out.probs, out.topk_idx, out.topk_w), w, atol=1e-6)


def test_it_renormalises_over_the_remaining_experts_when_one_is_left_out(
    trunk_cls, stub_expert
):
    a = stub_expert("a", ["x"], logits=[0.0])
    b = stub_expert("b", ["u"], logits=[0.0])
    moe = MixtureOfExperts(fixed_router([0.9, 0.1]), [a, b]).eval()
    out = moe(trunk_cls(pooled=torch.randn(2, 4)), exclude=[0])
    assert out.topk_idx[:, 0].tolist() == [1, 1]
    assert a.calls == 0
    assert torch.allclose(out.log_probs.exp(), torch.tensor([[0.0, 1.0], [0.0, 1.0]]), atol=1e-6)


def test_it_lets_the_nll_train_the_router_through_the_dense_mixture(trunk_cls, stub_expert):
    a = stub_expert("a", ["x"], logits=[0.0])
    b = stub_expert("b", ["u"], logits=[0.0])
    moe = MixtureOfExperts(fixed_router([0.5, 0.5]), [a, b])
    out = moe(trunk_cls(pooled=torch.randn(3, 4)), mix="dense")
    loss = -out.log_probs[:, 0].mean()
    loss.backward()
    assert moe.router.gate.bias.grad is not None
    assert moe.router.gate.bias.grad[0].item() < 0  # more weight on expert a lowers the loss


def test_it_rejects_a_router_sized_for_another_pool(stub_expert):
    with pytest.raises(ValueError):
        MixtureOfExperts(fixed_router([0.5, 0.5]), [stub_expert("a", ["x"])])


def test_it_routes_on_separate_router_features_when_given(trunk_cls, stub_expert):
    a, b = stub_expert("a", ["x"], logits=[0.0]), stub_expert("b", ["u"], logits=[0.0])
    moe = MixtureOfExperts(sign_router(), [a, b]).eval()
    pooled = torch.ones(2, 4)  # would route both rows to expert 0
    features = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])
    out = moe(trunk_cls(pooled=pooled), router_input=features)
    assert out.topk_idx[:, 0].tolist() == [0, 1]
    assert (a.rows_seen, b.rows_seen) == (1, 1)
