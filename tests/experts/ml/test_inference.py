"""Inference backends of the frozen backbone: features close to torch float32, cached exports,
and a clean refusal where a backend cannot run."""
from __future__ import annotations

import sys

import pytest
import torch

from experts.ml import inference
from experts.ml.inference import BackendUnavailable, onnx_path, open_backend
from experts.ml.trunk import TrunkSpec
from tests.experts.ml.tiny import TINY_LAYERS, sample_texts

# Stated tolerances (max abs difference of pooled / token states against float32, tiny model):
TOLERANCE = {"torch-bfloat16": 5e-2, "onnx-float32": 1e-4, "onnx-int8": 1.5e-1}
SPEC = TrunkSpec.of(pooled=[0, TINY_LAYERS], tokens=[1])


def _features(trunk, texts):
    return {tuple(idx): batch for idx, batch in trunk.encode_batches(texts, SPEC, batch_size=5)}


@pytest.mark.parametrize("backend", sorted(TOLERANCE))
def test_it_keeps_each_backends_features_close_to_float32(tiny_backbone, tmp_path, backend):
    if backend.startswith("onnx"):
        pytest.importorskip("onnxruntime")
    texts = sample_texts(12)
    reference = _features(tiny_backbone, texts)
    served = _features(open_backend(tiny_backbone, backend, cache_dir=tmp_path), texts)
    assert served.keys() == reference.keys()
    for idx, ref in reference.items():
        got = served[idx]
        assert sorted(got.pooled) == sorted(ref.pooled) == [0, 1, TINY_LAYERS]
        for layer, values in ref.pooled.items():
            assert got.pooled[layer].dtype == torch.float32
            torch.testing.assert_close(got.pooled[layer], values, rtol=0,
                                       atol=TOLERANCE[backend])
        mask = ref.mask.bool()
        torch.testing.assert_close(got.hidden[1].float()[mask], ref.hidden[1].float()[mask],
                                   rtol=0, atol=TOLERANCE[backend])
    assert tiny_backbone.dtype == torch.float32  # the float32 backbone is left as it was


def test_it_caches_the_export_by_fingerprint_backend_and_opset(tiny_backbone, tmp_path,
                                                               monkeypatch):
    pytest.importorskip("onnxruntime")
    open_backend(tiny_backbone, "onnx-int8", cache_dir=tmp_path)
    path = onnx_path(tmp_path, tiny_backbone, "onnx-int8")
    assert path.exists() and onnx_path(tmp_path, tiny_backbone, "onnx-float32").exists()
    assert tiny_backbone.fingerprint[:16] in path.name and "opset" in path.name

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(inference, "_export_float32", no_export)
    open_backend(tiny_backbone, "onnx-float32", cache_dir=tmp_path)


def test_it_says_a_backend_is_unavailable_when_onnxruntime_is_missing(tiny_backbone, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert not inference.onnx_available()
    assert inference.candidate_backends(bf16_fast=False) == ["torch-float32"]
    with pytest.raises(BackendUnavailable, match="onnxruntime is not installed"):
        open_backend(tiny_backbone, "onnx-int8", cache_dir=tmp_path)
    assert open_backend(tiny_backbone, "torch-float32", cache_dir=tmp_path) is tiny_backbone


def test_it_refuses_an_unknown_backend(tiny_backbone, tmp_path):
    with pytest.raises(ValueError, match="torch-float32"):
        open_backend(tiny_backbone, "openvino-int4", cache_dir=tmp_path)
