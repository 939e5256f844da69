from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from experts.ml.backbone import run_encoder_layers
from experts.ml.modules import BranchExpert, ExpertConfig, HeadExpert, build_expert
from experts.ml.trunk import TrunkBatch, collate_trunk, mean_pool
from tests.experts.ml.tiny import TINY_HIDDEN, TINY_LAYERS, sample_texts


def _cfg(kind: str, **kw) -> ExpertConfig:
    split = TINY_LAYERS if kind == "head" else TINY_LAYERS - 2
    return ExpertConfig(
        kind=kind, domain="toy", labels=["a", "b", "c"], hidden_size=TINY_HIDDEN,
        split_layer=split, n_branch_layers=0 if kind == "head" else 2, mlp_hidden=16, **kw,
    )


def test_it_builds_a_head_expert_on_pooled_features():
    expert = build_expert(_cfg("head"))
    assert isinstance(expert, HeadExpert) and not expert.needs_tokens
    logits = expert(TrunkBatch(pooled=torch.randn(5, TINY_HIDDEN)))
    assert logits.shape == (5, 3)


def test_it_pads_token_states_into_a_trunk_batch():
    items = [torch.ones(2, TINY_HIDDEN), 3 * torch.ones(4, TINY_HIDDEN)]
    batch = collate_trunk(items)
    assert batch.hidden.shape == (2, 4, TINY_HIDDEN)
    assert batch.mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    expected = torch.stack([torch.ones(TINY_HIDDEN), 3 * torch.ones(TINY_HIDDEN)])
    assert torch.equal(batch.pooled, expected)


def test_it_starts_a_branch_as_the_backbone_top_layers(tiny_backbone):
    expert = build_expert(_cfg("branch"), tiny_backbone).eval()
    assert isinstance(expert, BranchExpert) and expert.needs_tokens
    assert expert.config.layer_config["hidden_size"] == TINY_HIDDEN
    texts = sample_texts(6)
    _, split_tokens = tiny_backbone.encode(texts, layer=TINY_LAYERS - 2, tokens=True)
    final = tiny_backbone.encode(texts, layer=TINY_LAYERS)
    trunk = collate_trunk(split_tokens)
    with torch.no_grad():
        top = run_encoder_layers(expert.layers, expert.hf_config, trunk.hidden, trunk.mask)
        pooled = mean_pool(top, trunk.mask)
        logits = expert(trunk)
    # before fine-tuning, the branch's own layers reproduce the frozen top of the backbone
    torch.testing.assert_close(pooled, final, atol=2e-2, rtol=0)  # fp16 token states
    torch.testing.assert_close(logits, expert.head(pooled), atol=1e-5, rtol=0)


def test_it_builds_the_same_branch_architecture_without_the_backbone(tiny_backbone):
    from_backbone = build_expert(_cfg("branch"), tiny_backbone)
    from_config = build_expert(_cfg("branch", layer_config=from_backbone.config.layer_config))
    a, b = from_backbone.state_dict(), from_config.state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    from_config.load_state_dict(a)
    trunk = collate_trunk([torch.randn(3, TINY_HIDDEN), torch.randn(5, TINY_HIDDEN)])
    with torch.no_grad():
        torch.testing.assert_close(from_config.eval()(trunk), from_backbone.eval()(trunk))


def test_it_rejects_a_branch_that_does_not_reach_the_top(tiny_backbone):
    with pytest.raises(ValueError, match="n_branch_layers"):
        build_expert(replace(_cfg("branch"), n_branch_layers=1), tiny_backbone)
    with pytest.raises(ValueError, match="layer_config"):
        build_expert(_cfg("branch"))


def test_it_needs_token_states_for_a_branch(tiny_backbone):
    expert = build_expert(_cfg("branch"), tiny_backbone)
    with pytest.raises(ValueError, match="token states"):
        expert(TrunkBatch(pooled=torch.randn(2, TINY_HIDDEN)))
