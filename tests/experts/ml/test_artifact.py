from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from experts.ml.artifact import (
    MANIFEST_NAME,
    WEIGHTS_NAME,
    ArtifactError,
    inspect_artifact,
    load_expert,
    save_expert,
)
from experts.ml.modules import ExpertConfig, build_expert
from experts.ml.trunk import collate_trunk
from tests.experts.ml.tiny import TINY_HIDDEN, TINY_LAYERS

CHECK_NAMES = [
    "file sizes", "manifest json", "manifest schema", "backbone", "safetensors header",
    "tensors match manifest", "tensors match architecture", "finite values", "loads and runs",
]


def _expert(kind: str, backbone, seed: int = 0):
    torch.manual_seed(seed)
    cfg = ExpertConfig(
        kind=kind, domain="toy", labels=["neg", "pos", "mixed"], hidden_size=TINY_HIDDEN,
        split_layer=TINY_LAYERS if kind == "head" else TINY_LAYERS - 1,
        n_branch_layers=0 if kind == "head" else 1, mlp_hidden=8,
    )
    return build_expert(cfg, backbone if kind == "branch" else None)


def _save(expert, path, backbone, **kw):
    return save_expert(expert, path, backbone=backbone, training={"epochs": 1, "seed": 0},
                       metrics={"dev_accuracy": 0.5}, **kw)


@pytest.fixture
def artifact(tmp_path, tiny_backbone):
    """(manifest dict, weights bytes) of a valid head expert."""
    folder = _save(_expert("head", tiny_backbone), tmp_path / "a", tiny_backbone)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    return manifest, (folder / WEIGHTS_NAME).read_bytes()


def _load(manifest, weights, backbone, **kw):
    manifest_bytes = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return load_expert(manifest_bytes, weights, expected_fingerprint=backbone.fingerprint, **kw)


def _rewrite_header(weights: bytes, mutate) -> bytes:
    (n,) = struct.unpack("<Q", weights[:8])
    header = json.loads(weights[8 : 8 + n])
    mutate(header)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + weights[8 + n :]


@pytest.mark.parametrize("kind", ["head", "branch"])
def test_it_round_trips_an_expert_exactly(kind, tiny_backbone, tmp_path):
    expert = _expert(kind, tiny_backbone).eval()
    with torch.no_grad():  # make every tensor non-trivial, not just freshly initialised
        for p in expert.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    folder = _save(expert, tmp_path / kind, tiny_backbone, extra={"name": "Toy", "license": "MIT"})
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST_NAME, WEIGHTS_NAME]
    loaded, manifest = load_expert(folder, expected_fingerprint=tiny_backbone.fingerprint)
    assert manifest["kind"] == kind and manifest["name"] == "Toy"
    assert manifest["backbone"]["fingerprint"] == tiny_backbone.fingerprint
    original, restored = expert.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    trunk = collate_trunk([torch.randn(3, TINY_HIDDEN), torch.randn(6, TINY_HIDDEN)])
    with torch.no_grad():
        assert torch.equal(loaded(trunk), expert(trunk))


def test_it_reports_every_check_on_a_valid_artifact(artifact, tiny_backbone):
    manifest, weights = artifact
    checks = inspect_artifact(json.dumps(manifest).encode(), weights,
                              expected_fingerprint=tiny_backbone.fingerprint)
    assert [c.name for c in checks] == CHECK_NAMES
    assert all(c.ok for c in checks), checks


def test_it_loads_half_precision_weights_as_float32(artifact, tiny_backbone):
    manifest, weights = artifact
    half = {k: v.half() for k, v in st_load(weights).items()}
    for spec in manifest["tensors"].values():
        spec["dtype"] = "F16"
    module, _ = _load(manifest, st_save(half), tiny_backbone)
    assert all(p.dtype == torch.float32 for p in module.parameters())


def test_it_never_unpickles(artifact, tiny_backbone, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling is forbidden")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    manifest, weights = artifact
    _load(manifest, weights, tiny_backbone)


def _nan(t):
    t[0] = float("nan")


def _inf(t):
    t[-1] = float("inf")


@pytest.mark.parametrize(("poison", "message"), [
    (_nan, "tensor 'head.fc1.bias' contains NaN"),
    (_inf, "tensor 'head.fc1.bias' contains Inf"),
])
def test_it_rejects_non_finite_weights(poison, message, artifact, tiny_backbone):
    manifest, weights = artifact
    tensors = st_load(weights)
    poison(tensors["head.fc1.bias"])
    with pytest.raises(ArtifactError, match=message):
        _load(manifest, st_save(tensors), tiny_backbone)
    checks = {c.name: c for c in inspect_artifact(json.dumps(manifest).encode(), st_save(tensors))}
    assert not checks["finite values"].ok
    assert checks["loads and runs"].message.startswith("not run: needs finite values")
    assert checks["tensors match architecture"].ok


def _overlap(h):
    h["head.norm.bias"]["data_offsets"] = h["head.norm.weight"]["data_offsets"]


def _out_of_range(h):
    begin, end = h["head.fc2.bias"]["data_offsets"]
    h["head.fc2.bias"]["data_offsets"] = [begin + 10**6, end + 10**6]


def _int_dtype(h):
    h["head.fc1.bias"]["dtype"] = "I32"


def _float64(h):
    h["head.fc1.bias"]["dtype"] = "F64"
    h["head.fc1.bias"]["shape"] = [h["head.fc1.bias"]["shape"][0] // 2]


@pytest.mark.parametrize(("mutate", "message"), [
    (_overlap, "overlapping data offsets"),
    (_out_of_range, "out-of-range offsets"),
    (_int_dtype, "tensor 'head.fc1.bias' has dtype I32; allowed dtypes: F32, F16, BF16"),
    (_float64, "has dtype F64"),
])
def test_it_rejects_a_bad_safetensors_layout(mutate, message, artifact, tiny_backbone):
    manifest, weights = artifact
    with pytest.raises(ArtifactError, match=message):
        _load(manifest, _rewrite_header(weights, mutate), tiny_backbone)


def test_it_rejects_a_truncated_file(artifact, tiny_backbone):
    manifest, weights = artifact
    with pytest.raises(ArtifactError, match="truncated file"):
        _load(manifest, weights[:-7], tiny_backbone)
    with pytest.raises(ArtifactError, match="truncated file"):
        _load(manifest, weights[:5], tiny_backbone)


def test_it_rejects_unused_bytes_in_the_data_section(artifact, tiny_backbone):
    manifest, weights = artifact
    with pytest.raises(ArtifactError, match="3 unexpected bytes after the last tensor"):
        _load(manifest, weights + b"abc", tiny_backbone)

    def shift_last(h):
        name = max((k for k in h if k != "__metadata__"), key=lambda k: h[k]["data_offsets"][0])
        begin, end = h[name]["data_offsets"]
        h[name]["data_offsets"] = [begin + 4, end + 4]

    with pytest.raises(ArtifactError, match="gap of 4 unused bytes before tensor"):
        _load(manifest, _rewrite_header(weights + b"\0" * 4, shift_last), tiny_backbone)


def test_it_rejects_a_header_length_beyond_the_file(artifact, tiny_backbone):
    manifest, weights = artifact
    bad = struct.pack("<Q", len(weights)) + weights[8:]
    with pytest.raises(ArtifactError, match="oversized header: .* but the file holds"):
        _load(manifest, bad, tiny_backbone)


def test_it_rejects_a_huge_header(artifact, tiny_backbone):
    manifest, weights = artifact
    (n,) = struct.unpack("<Q", weights[:8])
    raw = weights[8 : 8 + n] + b" " * (2 * 1024 * 1024)  # valid JSON, absurd size
    bad = struct.pack("<Q", len(raw)) + raw + weights[8 + n :]
    with pytest.raises(ArtifactError, match="oversized header: .* the limit is 1048576"):
        _load(manifest, bad, tiny_backbone)


def test_it_rejects_unknown_and_missing_tensors(artifact, tiny_backbone):
    manifest, weights = artifact
    tensors = st_load(weights)
    with pytest.raises(ArtifactError, match="unknown tensor 'x'"):
        _load(manifest, st_save({**tensors, "x": torch.zeros(2)}), tiny_backbone)
    del tensors["head.fc2.bias"]
    with pytest.raises(ArtifactError, match="missing tensor 'head.fc2.bias'"):
        _load(manifest, st_save(tensors), tiny_backbone)


def test_it_rejects_tensors_the_architecture_does_not_have(artifact, tiny_backbone):
    manifest, weights = artifact
    tensors = {**st_load(weights), "x": torch.zeros(2)}
    manifest["tensors"]["x"] = {"dtype": "F32", "shape": [2]}  # consistent, but not in the model
    with pytest.raises(ArtifactError, match="unknown tensor 'x': the described architecture"):
        _load(manifest, st_save(tensors), tiny_backbone)


def test_it_rejects_shape_and_dtype_mismatches(artifact, tiny_backbone):
    manifest, weights = artifact
    bad = json.loads(json.dumps(manifest))
    bad["tensors"]["head.fc2.bias"]["shape"] = [4]
    message = r"'head.fc2.bias' has shape \[3\] in the weights file but \[4\] in the manifest"
    with pytest.raises(ArtifactError, match=message):
        _load(bad, weights, tiny_backbone)
    bad = json.loads(json.dumps(manifest))
    bad["architecture"]["mlp_hidden"] = 9  # weights and manifest agree, the architecture does not
    message = r"but the described architecture \(head expert, 3 labels, mlp_hidden 9\) needs"
    with pytest.raises(ArtifactError, match=message):
        _load(bad, weights, tiny_backbone)
    tensors = st_load(weights)
    tensors["head.fc2.bias"] = tensors["head.fc2.bias"].half()
    with pytest.raises(ArtifactError, match="is F16 in the weights file but F32 in the manifest"):
        _load(manifest, st_save(tensors), tiny_backbone)


def test_it_rejects_an_expert_built_on_another_backbone(artifact):
    manifest, weights = artifact
    fp = manifest["backbone"]["fingerprint"]
    message = f"built on backbone {fp}, this platform runs {'0' * 64}"
    with pytest.raises(ArtifactError, match=message):
        load_expert(json.dumps(manifest).encode(), weights, expected_fingerprint="0" * 64)


def test_it_rejects_oversized_files(artifact, tiny_backbone, tmp_path):
    manifest, weights = artifact
    # The upload's own messages (experts.ml.upload_checks.read_capped): one wording everywhere.
    with pytest.raises(ArtifactError, match=f"weights file is {len(weights)} bytes; the limit is "
                                            f"{len(weights) - 1} bytes"):
        _load(manifest, weights, tiny_backbone, max_bytes=len(weights) - 1)
    path = tmp_path / "w.safetensors"
    path.write_bytes(weights)
    with pytest.raises(ArtifactError, match="the limit is 1000 bytes"):
        _load(manifest, path, tiny_backbone, max_bytes=1000)
    with pytest.raises(ArtifactError, match="manifest is 2.0 MiB; the limit is 1.0 MiB"):
        _load(b" " * (2 * 1024 * 1024), weights, tiny_backbone)


def _set(path, value):
    def mutate(m):
        *parents, leaf = path.split(".")
        for key in parents:
            m = m[key]
        if value is KeyError:
            del m[leaf]
        else:
            m[leaf] = value
    return mutate


def _int_tensor_in_manifest(m):
    m["tensors"]["head.fc1.bias"] = {"dtype": "I64", "shape": [8]}


@pytest.mark.parametrize(("mutate", "message"), [
    (_set("labels", ["a", "a", "b"]), "manifest.labels must be a non-empty list of distinct"),
    (_set("labels", []), "manifest.labels must be a non-empty list"),
    (_set("labels", KeyError), "manifest.labels is required"),
    (_set("format_version", 2), "manifest.format_version must be 1"),
    (_set("kind", "mlp"), "manifest.kind must be one of head, branch, lora"),
    (_set("domain", "a:b"), "manifest.domain must be"),
    (_set("backbone.fingerprint", "abc"), "manifest.backbone.fingerprint must be 64 lowercase hex"),
    (_set("split_layer", 99), "manifest.split_layer must be at most backbone.num_layers"),
    (_set("architecture.n_branch_layers", 2), "n_branch_layers must be 0 for a head expert"),
    (_set("architecture.mlp_hidden", "big"), "manifest.architecture.mlp_hidden must be an integer"),
    (_set("metrics", {"dev_accuracy": "high"}), "manifest.metrics must be an object whose values"),
    (_int_tensor_in_manifest, r"manifest.tensors\['head.fc1.bias'\].dtype must be one of F32"),
    (_set("training", []), "manifest.training must be an object"),
    (_set("surprise", 1), "manifest has unknown field 'surprise'"),
])
def test_it_rejects_manifest_schema_errors(mutate, message, artifact, tiny_backbone):
    manifest, weights = artifact
    mutate(manifest)
    with pytest.raises(ArtifactError, match=message):
        _load(manifest, weights, tiny_backbone)


def test_it_rejects_a_manifest_that_is_not_json(artifact, tiny_backbone):
    _, weights = artifact
    with pytest.raises(ArtifactError, match="manifest is not valid UTF-8 JSON"):
        _load(b"{not json", weights, tiny_backbone)


def test_it_rejects_a_branch_whose_layers_do_not_reach_the_top(tiny_backbone, tmp_path):
    folder = _save(_expert("branch", tiny_backbone), tmp_path / "b", tiny_backbone)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["split_layer"] = 1
    with pytest.raises(ArtifactError, match="n_branch_layers must equal backbone.num_layers"):
        _load(manifest, (folder / WEIGHTS_NAME).read_bytes(), tiny_backbone)
