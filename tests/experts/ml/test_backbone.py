from __future__ import annotations

import re

import pytest
import torch

from experts.ml.backbone import plain_forward_throughput
from experts.ml.trunk import mean_pool
from tests.experts.ml.tiny import (
    TINY_HIDDEN,
    TINY_LAYERS,
    load_tiny_backbone,
    sample_texts,
    write_tiny_model,
)


def _reference_pooled(backbone, texts, layer):
    """Unbucketed reference: one text at a time through the plain HF forward."""
    rows = []
    for text in texts:
        enc = backbone.tokenizer([text], truncation=True, max_length=backbone.cfg.max_length,
                                 return_tensors="pt")
        with torch.inference_mode():
            out = backbone.model(**enc, output_hidden_states=True)
        rows.append(mean_pool(out.hidden_states[layer], enc["attention_mask"]))
    return torch.cat(rows)


def test_it_loads_a_backbone_from_a_model_folder(tiny_backbone):
    assert tiny_backbone.num_layers == TINY_LAYERS
    assert tiny_backbone.hidden_size == TINY_HIDDEN
    assert tiny_backbone.device == torch.device("cpu")
    assert re.fullmatch(r"[0-9a-f]{64}", tiny_backbone.fingerprint)
    assert not any(p.requires_grad for p in tiny_backbone.model.parameters())
    assert not tiny_backbone.model.training


def test_it_fingerprints_weights_not_the_folder(tiny_model_dir, tiny_backbone, tmp_path):
    again = load_tiny_backbone(tiny_model_dir)
    assert again.fingerprint == tiny_backbone.fingerprint
    same_weights_elsewhere = write_tiny_model(tmp_path / "copy", seed=0)
    assert load_tiny_backbone(same_weights_elsewhere).fingerprint == tiny_backbone.fingerprint
    other_weights = write_tiny_model(tmp_path / "other", seed=1)
    assert load_tiny_backbone(other_weights).fingerprint != tiny_backbone.fingerprint


@pytest.mark.parametrize("layer", [0, 1, TINY_LAYERS])
def test_it_encodes_the_same_bucketed_as_one_by_one(tiny_backbone, layer):
    texts = sample_texts(11)
    pooled = tiny_backbone.encode(texts, layer=layer)  # batch_size 64: one padded batch
    tiny_backbone.cfg.batch_size = 3  # several length buckets, reordered then restored
    try:
        bucketed = tiny_backbone.encode(texts, layer=layer)
    finally:
        tiny_backbone.cfg.batch_size = 64
    reference = _reference_pooled(tiny_backbone, texts, layer)
    assert pooled.shape == (11, TINY_HIDDEN) and pooled.dtype == torch.float32
    torch.testing.assert_close(bucketed, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, reference, atol=1e-5, rtol=1e-5)


def test_it_returns_token_states_per_text(tiny_backbone):
    texts = sample_texts(5)
    pooled, tokens = tiny_backbone.encode(texts, layer=2, tokens=True)
    lengths = [len(ids) for ids in tiny_backbone.tokenize(texts)]
    assert [t.shape for t in tokens] == [(n, TINY_HIDDEN) for n in lengths]
    assert all(t.dtype == torch.float16 for t in tokens)
    means = torch.stack([t.float().mean(0) for t in tokens])
    torch.testing.assert_close(means, pooled, atol=1e-2, rtol=1e-2)


def test_it_runs_layer_ranges_like_the_full_forward(tiny_backbone):
    ids = tiny_backbone.tokenize(sample_texts(4))
    input_ids, mask = tiny_backbone.pad(ids)
    with torch.inference_mode():
        h = tiny_backbone.embed_tokens(input_ids, mask)
        h = tiny_backbone.run_layers(h, mask, 0, 2)
        h = tiny_backbone.run_layers(h, mask, 2, TINY_LAYERS)
        full = tiny_backbone.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(h[real], full[real], atol=1e-5, rtol=1e-5)


def test_it_truncates_to_max_length(tiny_model_dir):
    short = load_tiny_backbone(tiny_model_dir, max_length=8)
    _, tokens = short.encode(["a " * 50], layer=1, tokens=True)
    assert tokens[0].shape[0] == 8


def test_it_rejects_layers_out_of_range(tiny_backbone):
    with pytest.raises(ValueError, match="layer"):
        tiny_backbone.encode(["a"], layer=TINY_LAYERS + 1)
    with pytest.raises(ValueError, match="layer range"):
        tiny_backbone.run_layers(torch.zeros(1, 2, TINY_HIDDEN), torch.ones(1, 2), 3, 2)


def test_it_copies_layers_as_independent_trainable_modules(tiny_backbone):
    layers = tiny_backbone.copy_layers(2, TINY_LAYERS)
    assert len(layers) == TINY_LAYERS - 2
    assert all(p.requires_grad and p.dtype == torch.float32 for p in layers.parameters())
    original = tiny_backbone.layers[2].output.dense.weight.clone()
    with torch.no_grad():
        layers[0].output.dense.weight.add_(1.0)
    assert torch.equal(tiny_backbone.layers[2].output.dense.weight, original)


def test_it_measures_the_plain_forward_baseline(tiny_backbone):
    assert plain_forward_throughput(tiny_backbone, sample_texts(8), batch_size=4) > 0
