"""The upload checks without torch: the same answers as the modules torch builds."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save
from transformers.activations import ACT2FN

from experts.ml.architecture import (
    EXPERT_KINDS,
    HIDDEN_ACTS,
    LAYER_MODEL_TYPES,
    ExpertConfig,
    expected_tensors,
)
from experts.ml.modules import LAYER_CLASSES, build_expert
from experts.ml.safetensors_header import parse_safetensors_header
from experts.ml.upload_checks import inspect_upload, non_finite
from tests.helpers import REPO

LAYER = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 48,
         "hidden_act": "gelu", "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1,
         "attention_probs_dropout_prob": 0.1}


def _meta_tensors(cfg: ExpertConfig) -> dict[str, list[int]]:
    """What torch builds: the module on the meta device, its state_dict shapes."""
    with torch.device("meta"):
        module = build_expert(cfg)
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("cfg", [
    ExpertConfig(kind="head", domain="d", labels=["a", "b", "c"], hidden_size=32,
                 split_layer=6, mlp_hidden=8),
    ExpertConfig(kind="branch", domain="d", labels=["a", "b"], hidden_size=32, split_layer=4,
                 n_branch_layers=2, mlp_hidden=16, layer_config={"model_type": "bert", **LAYER}),
    ExpertConfig(kind="branch", domain="d", labels=list("abcde"), hidden_size=32,
                 split_layer=5, n_branch_layers=1, mlp_hidden=7,
                 layer_config={"model_type": "roberta", **LAYER}),
], ids=["head", "bert-branch", "roberta-branch"])
def test_it_computes_the_tensors_torch_builds(cfg):
    expected = expected_tensors(cfg)
    assert expected == _meta_tensors(cfg)
    assert list(expected) == list(_meta_tensors(cfg))  # same order: first missing is the same


def test_it_knows_the_names_transformers_knows():
    assert HIDDEN_ACTS == set(ACT2FN)
    assert set(LAYER_MODEL_TYPES) == set(LAYER_CLASSES)
    assert {"head", "branch"} <= set(EXPERT_KINDS)


def test_it_imports_the_upload_checks_without_torch_or_django():
    code = ("import sys, experts.ml.upload_checks\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'django', 'safetensors', 'celery'))\n"
            "print(heavy)\n"
            "sys.exit(1 if heavy else 0)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("value", "found"), [(float("nan"), "NaN"), (float("inf"), "Inf"),
                                              (float("-inf"), "Inf"), (65504.0, None),
                                              (-0.0, None), (1e-40, None)])
def test_it_finds_nan_and_inf_from_the_bits(dtype, value, found):
    t = torch.zeros(7, dtype=dtype)
    t[3] = value
    data = st_save({"a": torch.ones(2, dtype=dtype), "x": t})
    infos = parse_safetensors_header(data)
    start = 8 + int(np.frombuffer(data[:8], dtype="<u8")[0])
    assert non_finite(data, infos["x"], data_start=start) == found
    assert non_finite(data, infos["a"], data_start=start) is None


def test_it_says_nan_when_a_tensor_holds_nan_and_inf():
    t = torch.tensor([float("inf"), float("nan")])
    data = st_save({"x": t})
    infos = parse_safetensors_header(data)
    start = 8 + int(np.frombuffer(data[:8], dtype="<u8")[0])
    assert non_finite(data, infos["x"], data_start=start) == "NaN"


def test_it_reports_each_check_with_the_platform_description(tmp_path, tiny_backbone):
    from experts.ml.artifact import save_expert
    from experts.ml.backbone import describe_backbone
    from experts.ml.modules import build_expert as build

    platform = describe_backbone(tiny_backbone.cfg)
    expert = build(ExpertConfig(kind="head", domain="toy", labels=["neg", "pos"],
                                hidden_size=tiny_backbone.hidden_size,
                                split_layer=tiny_backbone.num_layers, mlp_hidden=4))
    with torch.no_grad():
        expert.head.fc2.bias[1] = float("inf")
    save_expert(expert, tmp_path, backbone=tiny_backbone, training={}, metrics={})
    checks = {c.name: c for c in inspect_upload(tmp_path, platform=platform)}
    assert "loads and runs" not in checks
    assert checks["backbone"].ok and checks["backbone"].message.startswith("matches platform")
    assert checks["tensors match architecture"].ok
    assert not checks["finite values"].ok
    assert checks["finite values"].message == "tensor 'head.fc2.bias' contains Inf"
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    other = {**platform, "fingerprint": "0" * 64}
    checks = {c.name: c for c in inspect_upload(tmp_path, platform=other)}
    assert checks["backbone"].message == (f"built on backbone {manifest['backbone']['fingerprint']}"
                                          f", this platform runs {'0' * 64}")
    assert checks["tensors match architecture"].message == "not run: needs backbone to pass"
