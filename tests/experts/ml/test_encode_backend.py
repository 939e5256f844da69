"""The encoding backend of training and validation: float32 only, its own feature-cache key, the
same features as torch within the stated tolerance, and torch when ONNX Runtime is missing."""
from __future__ import annotations

import sys

import pytest
import torch

from experts.ml import inference
from experts.ml.features import FeatureCache
from experts.ml.inference import encode_backend_name, open_encoder
from experts.ml.trunk import TrunkSpec
from tests.experts.ml.tiny import TINY_LAYERS, sample_texts

ONNX_FLOAT32_ATOL = 1e-4  # as test_inference's tolerance for onnx-float32 on the tiny model
SPEC = TrunkSpec.of(pooled=[0, TINY_LAYERS], tokens=[1])


def test_it_encodes_with_onnx_float32_into_its_own_cache_key(tiny_backbone, tmp_path):
    pytest.importorskip("onnxruntime")
    texts = sample_texts(10)
    plain = FeatureCache(tmp_path / "fc", tiny_backbone)
    onnx = FeatureCache(tmp_path / "fc", tiny_backbone,
                        encoder=open_encoder(tiny_backbone, "onnx-float32", cache_dir=tmp_path))
    assert (plain.backend, onnx.backend) == ("torch-float32", "onnx-float32")
    assert plain.root != onnx.root and plain.root.parent == onnx.root.parent

    ref, got = plain.load(texts, SPEC), onnx.load(texts, SPEC)
    assert onnx.encoded_count == len(texts)  # nothing was taken from the torch shards
    for layer in (0, TINY_LAYERS):
        torch.testing.assert_close(got.pooled[layer], ref.pooled[layer], rtol=0,
                                   atol=ONNX_FLOAT32_ATOL)
    for a, b in zip(got.tokens[1], ref.tokens[1], strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=2e-3)  # fp16 storage

    again = FeatureCache(tmp_path / "fc", tiny_backbone,
                         encoder=open_encoder(tiny_backbone, "onnx-float32", cache_dir=tmp_path))
    assert torch.equal(again.load(texts, SPEC).pooled[0], got.pooled[0])  # the stored bytes
    assert again.encoded_count == 0  # read back from the onnx-float32 shards


def test_it_means_onnx_on_cpu_by_auto_and_torch_without_onnxruntime(tiny_backbone, tmp_path,
                                                                   monkeypatch):
    pytest.importorskip("onnxruntime")
    assert encode_backend_name("auto", tiny_backbone) == "onnx-float32"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert encode_backend_name("auto", tiny_backbone) == "torch-float32"
    assert open_encoder(tiny_backbone, "auto", cache_dir=tmp_path) is tiny_backbone


def test_it_falls_back_to_torch_when_the_configured_onnx_cannot_run(tiny_backbone, tmp_path,
                                                                   monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with caplog.at_level("WARNING", logger=inference.__name__):
        encoder = open_encoder(tiny_backbone, "onnx-float32", cache_dir=tmp_path)
    assert encoder is tiny_backbone
    assert "encoding with torch-float32" in caplog.text and "onnxruntime" in caplog.text
    assert FeatureCache(tmp_path, tiny_backbone, encoder=encoder).backend == "torch-float32"


@pytest.mark.parametrize("backend", ["torch-bfloat16", "onnx-int8", "openvino"])
def test_it_refuses_encoding_backends_that_change_the_features(tiny_backbone, backend):
    with pytest.raises(ValueError, match="bfloat16 and int8 change the features"):
        encode_backend_name(backend, tiny_backbone)


def test_it_names_a_bfloat16_trunk_so_its_features_never_pass_for_float32(tiny_backbone,
                                                                          tmp_path):
    trunk = inference.open_backend(tiny_backbone, "torch-bfloat16", cache_dir=tmp_path)
    assert FeatureCache(tmp_path, tiny_backbone, encoder=trunk).backend == "torch-bfloat16"
