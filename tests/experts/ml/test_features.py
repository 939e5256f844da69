from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from experts.ml.features import FeatureCache
from experts.ml.trunk import TrunkSpec
from tests.experts.ml.tiny import load_tiny_backbone, sample_texts

REPO = Path(__file__).resolve().parents[3]


class CountingBackbone:
    """Wraps a backbone and counts the texts it is asked to encode."""

    def __init__(self, backbone):
        self._backbone = backbone
        self.encoded: list[str] = []

    def __getattr__(self, name):
        return getattr(self._backbone, name)

    def encode_set(self, texts, spec, **kwargs):
        self.encoded.extend(texts)
        self.passes = getattr(self, "passes", 0) + 1
        return self._backbone.encode_set(texts, spec, **kwargs)


def test_it_encodes_each_text_once(tiny_backbone, tmp_path):
    counting = CountingBackbone(tiny_backbone)
    texts = sample_texts(20)
    first = FeatureCache(tmp_path, counting).pooled(texts, layer=2)
    assert len(counting.encoded) == 20
    again = FeatureCache(tmp_path, counting)  # a fresh instance reads the shards on disk
    assert torch.equal(again.pooled(texts, layer=2), first)  # the very same bytes read back
    assert len(counting.encoded) == 20
    more = [*texts[:5], "brand new text", "brand new text"]  # only the new text, once
    out = again.pooled(more, layer=2)
    assert counting.encoded[20:] == ["brand new text"]
    assert torch.equal(out[:5], first[:5])
    assert torch.equal(out[5], out[6])


def test_it_serves_what_the_backbone_computes(tiny_backbone, tmp_path):
    texts = sample_texts(9)
    cache = FeatureCache(tmp_path, tiny_backbone, shard_size=4)  # several shards
    direct_pooled, direct_tokens = tiny_backbone.encode(texts, layer=3, tokens=True)
    tokens = cache.tokens(texts, layer=3)
    # Two code paths (other batches, so other padding): equal up to float rounding, which
    # differs between CPUs (AVX2 vs AVX-512/AMX kernels); token states are stored as fp16.
    for got, want in zip(tokens, direct_tokens, strict=True):
        torch.testing.assert_close(got, want, atol=2e-3, rtol=1e-3)
    pooled = cache.pooled(texts, layer=3)
    torch.testing.assert_close(pooled, direct_pooled, atol=1e-5, rtol=1e-5)
    assert cache.encoded_count == 9  # token encoding stored the pooled vectors as well
    # a different order and a subset come back aligned with the request (same bytes read back)
    assert torch.equal(cache.tokens(texts[::-2], layer=3)[0], tokens[-1])
    assert torch.equal(cache.pooled(texts[::-2], layer=3)[0], pooled[-1])


def test_it_encodes_every_layer_a_spec_needs_in_one_pass(tiny_backbone, tmp_path):
    counting = CountingBackbone(tiny_backbone)
    cache = FeatureCache(tmp_path, counting)
    texts = sample_texts(6)
    spec = TrunkSpec.of(pooled=[0, 4], tokens=[2])
    trunks = cache.load(texts, spec)
    assert counting.passes == 1 and len(counting.encoded) == 6
    assert set(trunks.pooled) == {0, 2, 4} and set(trunks.tokens) == {2}
    for layer in (0, 2, 4):
        torch.testing.assert_close(trunks.pooled[layer], tiny_backbone.encode(texts, layer=layer),
                                   atol=1e-5, rtol=1e-5)
    # a second load, and single-layer reads of the same layers, encode nothing
    cache.load(texts, spec)
    cache.pooled(texts, layer=4)
    cache.tokens(texts, layer=2)
    assert counting.passes == 1


def test_it_keys_features_by_layer_and_max_length(tiny_model_dir, tiny_backbone, tmp_path):
    counting = CountingBackbone(tiny_backbone)
    cache = FeatureCache(tmp_path, counting)
    cache.pooled(["one text"], layer=1)
    cache.pooled(["one text"], layer=2)
    assert len(counting.encoded) == 2
    other = CountingBackbone(load_tiny_backbone(tiny_model_dir, max_length=16))
    FeatureCache(tmp_path, other).pooled(["one text"], layer=1)
    assert other.encoded == ["one text"]


def test_it_ignores_temp_files_and_unreadable_shards(tiny_backbone, tmp_path):
    cache = FeatureCache(tmp_path, tiny_backbone)
    cache.pooled(["kept"], layer=1)
    folder = next(tmp_path.rglob("pooled"))
    (folder / ".tmp-shard-half-written.safetensors").write_bytes(b"\x00" * 10)
    (folder / "shard-corrupt.safetensors").write_bytes(b"garbage")
    fresh = FeatureCache(tmp_path, CountingBackbone(tiny_backbone))
    torch.testing.assert_close(fresh.pooled(["kept"], layer=1), cache.pooled(["kept"], layer=1))
    assert fresh.backbone.encoded == []


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from experts.ml.features import FeatureCache
    from tests.experts.ml.tiny import load_tiny_backbone, sample_texts
    model_dir, root, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cache = FeatureCache(Path(root), load_tiny_backbone(Path(model_dir)), shard_size=5)
    texts = sample_texts(40)[start : start + 25]
    cache.tokens(texts, layer=2)
    cache.pooled(texts, layer=4)
    """
)


def test_it_is_safe_with_concurrent_writer_processes(tiny_model_dir, tiny_backbone, tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tiny_model_dir), str(tmp_path), str(start)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for start in (0, 15)  # overlapping halves: texts 15..24 are written by both
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()
    assert not list(tmp_path.rglob(".tmp-*"))
    texts = sample_texts(40)
    reader = FeatureCache(tmp_path, CountingBackbone(tiny_backbone))
    pooled = reader.pooled(texts, layer=4)
    tokens = reader.tokens(texts, layer=2)
    assert reader.backbone.encoded == []
    expected_pooled, expected_tokens = tiny_backbone.encode(texts, layer=2, tokens=True)
    torch.testing.assert_close(pooled, tiny_backbone.encode(texts, layer=4), atol=1e-6, rtol=0)
    for got, want in zip(tokens, expected_tokens, strict=True):
        torch.testing.assert_close(got, want, atol=1e-3, rtol=0)
