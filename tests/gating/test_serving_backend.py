"""The serving backend's accuracy gate: a backend that changes predictions is measured in the
evaluation report and refused at promotion; serving falls back to torch float32 when the
configured backend cannot run."""
from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

from experts.ml.data import DomainData
from gating import serving
from gating.ml.backend_gate import (
    compare_backends,
    gate_verdict,
    pick_backend,
    promotion_refusal,
    serving_backend_report,
)
from gating.ml.bundle import GatingModel
from gating.ml.moe import MixtureOfExperts
from gating.ml.router import Router, RouterConfig
from gating.models import GatingVersion
from tests.experts.ml.tiny import TINY_HIDDEN, TINY_LAYERS, sample_texts
from tests.gating.ml.conftest import StubExpert
from tests.helpers import api_client_for


class NoisyTrunk:
    """A backend that changes predictions: the backbone's features plus large noise."""

    def __init__(self, backbone, std: float = 5.0) -> None:
        self.backbone, self.std = backbone, std

    def __getattr__(self, name):
        return getattr(self.backbone, name)

    def encode_batches(self, texts, spec, *, batch_size=None):
        g = torch.Generator().manual_seed(0)
        for idx, batch in self.backbone.encode_batches(texts, spec, batch_size=batch_size):
            pooled = {k: v + self.std * torch.randn(v.shape, generator=g)
                      for k, v in batch.pooled.items()}
            yield idx, dataclasses.replace(batch, pooled=pooled)


def tiny_model(backbone) -> GatingModel:
    layer = TINY_LAYERS
    experts = [StubExpert("a", ["x", "y"], hidden=TINY_HIDDEN, split_layer=layer, seed=1),
               StubExpert("b", ["u", "v"], hidden=TINY_HIDDEN, split_layer=layer, seed=2)]
    router = Router(RouterConfig(hidden_size=TINY_HIDDEN, n_experts=2, noise_std=0.0,
                                 input_layers=(layer,)))
    return GatingModel(moe=MixtureOfExperts(router, experts).eval(), keys=["1", "2"],
                       fingerprint=backbone.fingerprint)


def test_it_refuses_a_backend_that_changes_predictions(tiny_backbone):
    model = tiny_model(tiny_backbone)
    texts = sample_texts(40)
    targets = torch.tensor([0] * 20 + [2] * 20)  # a:x for the first half, b:u for the rest
    groups = ["a"] * 20 + ["b"] * 20
    out = compare_backends(model, tiny_backbone,
                           {"same": tiny_backbone, "noisy": NoisyTrunk(tiny_backbone)},
                           texts=texts, targets=targets, groups=groups, batch_size=8)
    assert out["backends"]["same"]["agreement"] == 1.0
    assert out["backends"]["same"]["accuracy_delta"] == 0.0
    assert out["backends"]["same"]["acceptable"] is True
    noisy = out["backends"]["noisy"]
    assert noisy["agreement"] < 0.995 and noisy["acceptable"] is False
    section = {**out, "configured": "noisy", "unavailable": {}}
    refusal = promotion_refusal(section)
    assert "noisy" in refusal and f"{noisy['agreement'] * 100:.2f} %" in refusal
    assert pick_backend(section) == "same"  # auto never picks a refused backend


def test_it_applies_the_thresholds_of_the_issue():
    assert gate_verdict(agreement=0.995, accuracy_delta=-0.3)
    assert not gate_verdict(agreement=0.994, accuracy_delta=0.0)
    assert not gate_verdict(agreement=1.0, accuracy_delta=0.31)
    assert pick_backend(None) == "torch-float32"


def test_it_measures_the_configured_backend_on_the_evaluation_rows(tiny_backbone, tmp_path):
    model = tiny_model(tiny_backbone)
    texts = sample_texts(16)
    domains = [DomainData(name="a", description="", labels=["x", "y"],
                          dev=[(t, "x") for t in texts[:8]]),
               DomainData(name="b", description="", labels=["u", "v"],
                          dev=[(t, "v") for t in texts[8:]])]
    out = serving_backend_report(model, tiny_backbone, domains, configured="torch-bfloat16",
                                 cache_dir=tmp_path)
    assert out["n"] == 16 and out["configured"] == out["chosen"] == "torch-bfloat16"
    assert set(out["backends"]) == {"torch-float32", "torch-bfloat16"}


def report_with(section: dict) -> dict:
    return {"summary": {"accuracy": 0.6, "macro_f1": 0.5},
            "domains": {"news": {"accuracy": 0.6, "macro_f1": 0.5}}, "serving_backend": section}


def test_it_refuses_to_promote_when_the_serving_backend_failed_the_gate(maintainer):
    failed = {"configured": "onnx-int8", "n": 400, "unavailable": {}, "backends": {
        "onnx-int8": {"agreement": 0.9375, "accuracy_delta": -1.17, "texts_per_s": 90.0,
                      "acceptable": False}}}
    version = GatingVersion.objects.create(number=1, status=GatingVersion.Status.EVALUATED,
                                           report=report_with(failed))
    response = api_client_for(maintainer).post(f"/api/v1/gating/{version.pk}/promote/")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "serving_backend_rejected"
    assert "onnx-int8" in error["message"] and "93.75 %" in error["message"]
    assert "-1.17 points" in error["message"]

    passed = {**failed, "configured": "auto"}  # auto serves float32 instead: promotable
    other = GatingVersion.objects.create(number=2, status=GatingVersion.Status.EVALUATED,
                                         report=report_with(passed))
    assert api_client_for(maintainer).post(
        f"/api/v1/gating/{other.pk}/promote/").status_code == 201


@pytest.fixture
def serving_state(tiny_backbone, monkeypatch):
    monkeypatch.setattr(serving._state, "backbone", tiny_backbone)
    monkeypatch.setattr(serving._state, "trunks", {})
    return tiny_backbone


def test_it_serves_with_float32_when_onnxruntime_is_missing(serving_state, settings,
                                                             monkeypatch, tmp_path):
    settings.MOECOLLAB_FEATURE_CACHE_DIR = tmp_path
    settings.MOECOLLAB_PREDICT_BACKEND = "onnx-int8"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    trunk, name = serving._trunk({})
    assert name == "torch-float32" and trunk is serving_state


def test_it_serves_the_fastest_backend_that_passed_when_auto(serving_state, settings,
                                                              tmp_path):
    settings.MOECOLLAB_FEATURE_CACHE_DIR = tmp_path
    settings.MOECOLLAB_PREDICT_BACKEND = "auto"
    section = {"backends": {
        "torch-float32": {"texts_per_s": 10.0, "acceptable": True},
        "torch-bfloat16": {"texts_per_s": 30.0, "acceptable": True},
        "onnx-int8": {"texts_per_s": 50.0, "acceptable": False}}}
    trunk, name = serving._trunk({"serving_backend": section})
    assert name == "torch-bfloat16" and trunk.dtype == torch.bfloat16
    assert serving._trunk({})[1] == "torch-float32"  # no measurements: float32
