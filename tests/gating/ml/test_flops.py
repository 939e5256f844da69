from __future__ import annotations

import torch

from experts.ml.trunk import TrunkSet
from gating.ml.flops import count_flops, moe_compute
from gating.ml.moe import MixtureOfExperts
from gating.ml.router import Router, RouterConfig


def test_it_counts_matmul_flops():
    a, b = torch.randn(3, 5), torch.randn(5, 7)
    assert count_flops(lambda: a @ b) == 2 * 3 * 5 * 7


def test_it_measures_fewer_flops_routed_than_dense(stub_expert):
    experts = [stub_expert(d, ["x", "y"], hidden=16, seed=i) for i, d in enumerate("abcd")]
    router = Router(RouterConfig(hidden_size=16, n_experts=4, noise_std=0.0, input_layers=(1,)))
    moe = MixtureOfExperts(router, experts)
    trunks = TrunkSet(pooled={1: torch.randn(32, 16)})
    w = torch.randn(16, 16)
    report = moe_compute(moe, trunks, trunk_fn=lambda i: trunks.pooled[1][i : i + 1] @ w,
                         top_k=1)
    assert report["trunk_flops_per_input"] == 2 * 16 * 16
    assert report["dense_flops_per_input"] > report["routed_flops_per_input"]
    assert 0 < report["reduction"] < 1
    # routed at k = 1 runs one 16x2 expert per input; dense runs four
    expert_cost = 2 * 16 * 2
    router_cost = report["router_flops_per_input"]
    assert report["routed_flops_per_input"] == 2 * 16 * 16 + router_cost + expert_cost
    assert report["dense_flops_per_input"] == 2 * 16 * 16 + router_cost + 4 * expert_cost


def test_it_adds_a_surface_routers_bucket_sums_by_hand(stub_expert):
    from experts.ml.surface import SurfaceBag

    experts = [stub_expert(d, ["x", "y"], hidden=16, seed=i) for i, d in enumerate("ab")]
    config = dict(hidden_size=16, n_experts=2, noise_std=0.0, input_layers=(1,))
    pooled = {1: torch.randn(3, 16)}
    bag = SurfaceBag.of_ids([[1, 2, 3], [4], [5, 6]], 64)
    plain = moe_compute(MixtureOfExperts(Router(RouterConfig(**config)), experts),
                        TrunkSet(pooled=pooled), top_k=1)
    surface = moe_compute(
        MixtureOfExperts(Router(RouterConfig(**config, surface_buckets=64)), experts),
        TrunkSet(pooled=pooled, surface=bag), top_k=1)
    # per input: E additions per bucket id, then E divisions and E additions to the logits
    extra = (6 * 2 + 3 * 2 * 2) / 3
    assert surface["router_flops_per_input"] == plain["router_flops_per_input"] + extra
    assert surface["dense_flops_per_input"] == plain["dense_flops_per_input"] + extra
