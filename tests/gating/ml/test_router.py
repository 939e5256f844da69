from __future__ import annotations

import math

import pytest
import torch

from gating.ml.router import Router, RouterConfig, route


def test_it_maps_pooled_features_to_one_logit_per_expert():
    for mlp_hidden in (0, 16):
        router = Router(RouterConfig(hidden_size=8, n_experts=3, mlp_hidden=mlp_hidden))
        assert router(torch.randn(5, 8)).shape == (5, 3)


def test_it_selects_top_k_and_renormalises_their_weights():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    probs, idx, w = route(logits, 2)
    expected = torch.softmax(logits, dim=-1)
    assert torch.allclose(probs, expected)
    assert idx[0].tolist() == [0, 1] and idx[1, 0].item() == 2
    p0, p1 = expected[0, 0], expected[0, 1]
    assert torch.allclose(w[0], torch.stack([p0 / (p0 + p1), p1 / (p0 + p1)]))
    assert torch.allclose(w.sum(-1), torch.ones(2))
    _, idx1, w1 = route(logits, 1)
    assert idx1.shape == (2, 1) and torch.allclose(w1, torch.ones(2, 1))


def test_it_applies_temperature_and_softmax_in_float32():
    logits = torch.tensor([[math.log(4.0), 0.0]], dtype=torch.bfloat16)
    probs, _, _ = route(logits, 1, temperature=2.0)
    assert probs.dtype == torch.float32
    assert torch.allclose(probs, torch.tensor([[2 / 3, 1 / 3]]), atol=1e-2)


def test_it_rejects_a_k_outside_the_expert_count():
    with pytest.raises(ValueError):
        route(torch.zeros(1, 3), 4)
    with pytest.raises(ValueError):
        route(torch.zeros(1, 3), 0)


def test_it_adds_noise_only_while_training():
    torch.manual_seed(0)
    router = Router(RouterConfig(hidden_size=8, n_experts=4, noise_std=1.0))
    x = torch.randn(6, 8)
    router.eval()
    clean = router(x)
    assert torch.equal(clean, router(x))
    router.train()
    noisy = router(x)
    assert not torch.allclose(noisy, clean)
    quiet = Router(RouterConfig(hidden_size=8, n_experts=4, noise_std=0.0))
    quiet.train()
    assert torch.equal(quiet(x), quiet.eval()(x))


def test_it_uses_its_own_k_by_default():
    router = Router(RouterConfig(hidden_size=4, n_experts=3, top_k=2))
    _, idx, _ = router.select(torch.randn(2, 3))
    assert idx.shape == (2, 2)


def test_it_standardises_its_input_with_training_statistics():
    router = Router(RouterConfig(hidden_size=2, n_experts=2, noise_std=0.0)).eval()
    features = torch.tensor([[0.0, 100.0], [2.0, 300.0]])
    router.fit_input_stats(features)
    with torch.no_grad():
        router.gate.weight.copy_(torch.eye(2))
        router.gate.bias.zero_()
    s = 2**0.5 / 2  # (x - mean) / std with the unbiased std of two points
    expected = torch.tensor([[-s, -100 / (100 * 2**0.5)], [s, 100 / (100 * 2**0.5)]])
    assert torch.allclose(router(features), expected, atol=1e-5)


def test_a_surface_router_adds_the_mean_of_its_bucket_vectors_to_the_gate():
    from experts.ml.surface import SurfaceBag

    router = Router(RouterConfig(hidden_size=4, n_experts=2, surface_buckets=16)).eval()
    with torch.no_grad():
        router.surface.weight[3] = torch.tensor([2.0, 0.0])
        router.surface.weight[5] = torch.tensor([0.0, 4.0])
    x = torch.randn(2, 4)
    bag = SurfaceBag.of_ids([[3, 5], []], 16)
    got = router(x, bag)
    plain = router.gate(router.body((x - router.input_mean) / router.input_std))
    assert torch.allclose(got[0], plain[0] + torch.tensor([1.0, 2.0]))
    assert torch.allclose(got[1], plain[1])  # an empty bag adds nothing
    with pytest.raises(ValueError, match="surface features and none were given"):
        router(x)
    with pytest.raises(ValueError, match="in 8 buckets for a router of 16"):
        router(x, SurfaceBag.of_ids([[1], [2]], 8))
    # a bag of the other feature set hashes other grams into those buckets: refused
    with pytest.raises(ValueError, match=r"\(version 1\) of 2 texts in 16 buckets for a "
                                         r"router of 16 buckets \(version 2\)"):
        router(x, SurfaceBag.of_ids([[1], [2]], 16, version=1))
    with pytest.raises(ValueError, match="surface feature version must be one of"):
        RouterConfig(hidden_size=4, n_experts=2, surface_buckets=16, surface_version=0)
