"""The serving dtype: bfloat16 where the CPU has AMX, float32 elsewhere; both paths run on
every CPU (bfloat16 matmuls are emulated, slowly, without AMX), so both are tested here."""
from __future__ import annotations

import pytest
import torch

from experts.ml.trunk import TrunkSpec
from gating.ml import predictor
from gating.ml.predictor import fast_cpu_bf16, prepare_for_serving
from tests.experts.ml.tiny import load_tiny_backbone, sample_texts


@pytest.fixture
def backbone(tiny_model_dir):
    return load_tiny_backbone(tiny_model_dir)  # its own copy: serving changes its dtype


def test_it_picks_bfloat16_only_where_the_cpu_runs_it_natively(backbone):
    assert prepare_for_serving(backbone, dtype="auto") == (
        "bfloat16" if fast_cpu_bf16() else "float32")


@pytest.mark.parametrize("amx", [True, False])
def test_it_follows_the_cpu_check_on_any_cpu(backbone, monkeypatch, amx):
    monkeypatch.setattr(predictor, "fast_cpu_bf16", lambda: amx)
    chosen = prepare_for_serving(backbone, dtype="auto")
    assert chosen == ("bfloat16" if amx else "float32")
    assert backbone.dtype == getattr(torch, chosen)
    assert next(backbone.model.parameters()).dtype == backbone.dtype


@pytest.mark.parametrize(("flags", "native"), [
    (["avx2"], False),  # AVX2-only (e.g. AMD EPYC Zen 2/3): oneDNN would emulate bf16
    (["avx2", "avx512f"], False),
    (["avx2", "avx512f", "avx512_bf16"], True),  # e.g. AMD EPYC Zen 4
])
def test_it_counts_avx512_bf16_as_native_and_plain_avx_as_not(monkeypatch, flags, native):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert fast_cpu_bf16(flags) is native


def test_it_never_calls_bfloat16_native_where_onednn_cannot_run_it(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert fast_cpu_bf16(["avx512_bf16", "amx_bf16"]) is False


def test_it_keeps_bfloat16_features_close_to_float32(tiny_model_dir, backbone):
    texts = sample_texts(12)
    spec = TrunkSpec.of(pooled=[0, 4], tokens=[2])
    reference = load_tiny_backbone(tiny_model_dir).encode_set(texts, spec)
    assert prepare_for_serving(backbone, dtype="bfloat16") == "bfloat16"
    served = backbone.encode_set(texts, spec)
    for layer in (0, 2, 4):
        assert served.pooled[layer].dtype == torch.float32  # pooling casts back
        torch.testing.assert_close(served.pooled[layer], reference.pooled[layer],
                                   atol=5e-2, rtol=5e-2)
        cosine = torch.nn.functional.cosine_similarity(served.pooled[layer],
                                                       reference.pooled[layer])
        assert cosine.min() > 0.999


def test_it_refuses_an_unknown_dtype(backbone):
    with pytest.raises(ValueError, match="auto, float32 or bfloat16"):
        prepare_for_serving(backbone, dtype="int8")
