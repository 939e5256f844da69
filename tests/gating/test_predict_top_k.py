"""Predict's top_k: a request may send each text to 1..N experts of the production model; the
answer says which k it used, and its numbers are the top-k mixture computed by hand."""
from __future__ import annotations

import pytest
import torch
from django.core.files.base import ContentFile

from experts.ml.architecture import ExpertConfig
from experts.ml.modules import build_expert
from gating import serving
from gating.ml.bundle import GatingModel, bundle_bytes
from gating.ml.moe import MixtureOfExperts, expert_view, router_features
from gating.ml.router import Router, RouterConfig
from gating.models import GatingVersion, Promotion
from tests.experts.ml.tiny import TINY_HIDDEN, TINY_LAYERS, sample_texts
from tests.helpers import api_client_for

DOMAINS = {"sport": ["win", "loss"], "money": ["up", "down", "flat"], "spam": ["ham", "spam"]}
TEXTS = sample_texts(6, seed=5)


def _model(backbone) -> GatingModel:
    """Three randomly initialised head experts and a linear router that sends each text to one
    expert unless a request asks for more: small, but every part is the real one."""
    torch.manual_seed(0)
    experts = [build_expert(ExpertConfig(kind="head", domain=d, labels=labels,
                                         hidden_size=TINY_HIDDEN, split_layer=TINY_LAYERS,
                                         mlp_hidden=16)).eval()
               for d, labels in DOMAINS.items()]
    router = Router(RouterConfig(hidden_size=TINY_HIDDEN, n_experts=3, top_k=1, noise_std=0.0,
                                 input_layers=(TINY_LAYERS,)))
    with torch.no_grad():  # large weights: the router prefers different experts per text
        for p in router.parameters():
            p.normal_(0, 3.0)
    return GatingModel(moe=MixtureOfExperts(router, experts).eval(), keys=["11", "12", "13"],
                       fingerprint=backbone.fingerprint)


@pytest.fixture
def production(db, tiny_backbone, monkeypatch, settings, maintainer):
    """The tiny model as the production version, served through the real loading path."""
    settings.MOECOLLAB_PREDICT_BACKEND = "torch-float32"
    serving.reset()
    monkeypatch.setattr(serving._state, "backbone", tiny_backbone)
    model = _model(tiny_backbone)
    version = GatingVersion.objects.create(number=1, status=GatingVersion.Status.EVALUATED)
    version.weights.save("tiny-top-k.safetensors", ContentFile(bundle_bytes(model)))
    Promotion.objects.create(version=version, promoted_by=maintainer)
    yield model
    serving.reset()


def _reference(model: GatingModel, backbone, texts: list[str], k: int) -> list[dict]:
    """The integrated prediction by hand: softmax router, top k renormalised, experts mixed."""
    moe, names = model.moe, model.moe.label_space.names
    out: list[dict | None] = [None] * len(texts)
    with torch.no_grad():
        for idx, batch in backbone.encode_batches(texts, model.spec, batch_size=64):
            logits = moe.router(router_features(batch, moe.router.config.input_layers))
            probs = torch.softmax(logits.float() / moe.router.config.temperature, dim=-1)
            own = [torch.softmax(e(expert_view(batch, e)).float(), dim=-1) for e in moe.experts]
            for j, i in enumerate(idx):
                chosen = probs[j].argsort(descending=True)[:k].tolist()
                total = float(probs[j, chosen].sum())
                mix = {name: 0.0 for name in names}
                for e in chosen:
                    domain, labels = moe.experts[e].config.domain, moe.experts[e].config.labels
                    for c, label in enumerate(labels):
                        mix[f"{domain}:{label}"] += float(probs[j, e]) / total * float(own[e][j, c])
                best = max(mix, key=mix.get)
                out[i] = {"label": best, "confidence": mix[best],
                          "experts": [(model.keys[e], float(probs[j, e]) / total)
                                      for e in chosen]}
    return out  # type: ignore[return-value]


def _predict(body: dict):
    return api_client_for(None).post("/api/v1/predict/", body, format="json")


def _check(answer: dict, reference: list[dict]) -> None:
    for got, want in zip(answer["predictions"], reference, strict=True):
        assert f"{got['domain']}:{got['label']}" == want["label"]
        assert got["confidence"] == pytest.approx(want["confidence"], abs=2e-5)
        assert [e["expert"] for e in got["experts"]] == [key for key, _ in want["experts"]]
        assert [e["weight"] for e in got["experts"]] == pytest.approx(
            [w for _, w in want["experts"]], abs=2e-5)


def test_it_routes_each_text_to_top_k_experts_when_asked(production, tiny_backbone):
    one = _predict({"texts": TEXTS})
    assert one.status_code == 200, one.content
    one = one.json()
    assert one["top_k"] == 1  # the model's own
    assert all(len(p["experts"]) == 1 and p["experts"][0]["weight"] == 1.0
               for p in one["predictions"])
    _check(one, _reference(production, tiny_backbone, TEXTS, 1))

    two = _predict({"texts": TEXTS, "top_k": 2})
    assert two.status_code == 200, two.content
    two = two.json()
    assert two["top_k"] == 2
    _check(two, _reference(production, tiny_backbone, TEXTS, 2))
    for p1, p2 in zip(one["predictions"], two["predictions"], strict=True):
        assert len(p2["experts"]) == 2 and p2["experts"][0]["expert"] == p1["experts"][0]["expert"]
        assert sum(e["weight"] for e in p2["experts"]) == pytest.approx(1.0, abs=1e-5)
        assert p2["experts"][0]["weight"] < 1.0  # the second expert takes part of the weight
    # A second expert mixed in changes the answers themselves, not only the list of experts.
    assert any(p1["confidence"] != p2["confidence"] or p1["label"] != p2["label"]
               for p1, p2 in zip(one["predictions"], two["predictions"], strict=True))

    every = _predict({"texts": TEXTS, "top_k": 3}).json()
    assert every["top_k"] == 3
    assert all(sorted(e["expert"] for e in p["experts"]) == ["11", "12", "13"]
               for p in every["predictions"])
    _check(every, _reference(production, tiny_backbone, TEXTS, 3))


def test_it_refuses_top_k_above_the_number_of_experts_with_the_bound(production):
    response = _predict({"texts": TEXTS, "top_k": 4})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_top_k"
    assert "has 3 experts; send between 1 and 3" in error["message"]


@pytest.mark.parametrize("top_k", [0, -1, "2", 2.5, True, None])
def test_it_refuses_a_top_k_that_is_not_a_positive_whole_number(production, top_k):
    response = _predict({"texts": TEXTS, "top_k": top_k})
    if top_k is None:  # null: the model's own, like leaving it out
        assert response.status_code == 200 and response.json()["top_k"] == 1
        return
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_top_k"
    assert "whole number of experts, at least 1" in error["message"]


def test_it_refuses_top_k_before_loading_any_model(db):
    serving.reset()
    response = _predict({"texts": ["hello"], "top_k": 0})
    assert response.status_code == 400  # not 503: the request itself is wrong
    assert response.json()["error"]["code"] == "invalid_top_k"


def test_a_domain_mix_model_answers_with_every_expert_of_the_chosen_domain(
        db, tiny_backbone, monkeypatch, settings, maintainer):
    """Two contributors' experts of one domain and one of another, served with mix="domain":
    each text gets both experts of its most probable domain, weights summing to one; a request
    that sets top_k gets top-k routing instead."""
    settings.MOECOLLAB_PREDICT_BACKEND = "torch-float32"
    serving.reset()
    monkeypatch.setattr(serving._state, "backbone", tiny_backbone)
    torch.manual_seed(1)
    pool = [("sport", ["win", "loss"]), ("sport", ["win", "loss"]), ("spam", ["ham", "spam"])]
    experts = [build_expert(ExpertConfig(kind="head", domain=d, labels=labels,
                                         hidden_size=TINY_HIDDEN, split_layer=TINY_LAYERS,
                                         mlp_hidden=16)).eval() for d, labels in pool]
    router = Router(RouterConfig(hidden_size=TINY_HIDDEN, n_experts=3, top_k=1, noise_std=0.0,
                                 input_layers=(TINY_LAYERS,), mix="domain"))
    with torch.no_grad():  # spam is the likeliest expert (0.4), sport the likeliest domain
        router.gate.weight.zero_()
        router.gate.bias.copy_(torch.log(torch.tensor([0.25, 0.35, 0.4])))
    model = GatingModel(moe=MixtureOfExperts(router, experts).eval(), keys=["21", "22", "23"],
                        fingerprint=tiny_backbone.fingerprint)
    version = GatingVersion.objects.create(number=1, status=GatingVersion.Status.EVALUATED)
    version.weights.save("tiny-domain.safetensors", ContentFile(bundle_bytes(model)))
    Promotion.objects.create(version=version, promoted_by=maintainer)
    try:
        answer = _predict({"texts": TEXTS}).json()
        assert answer["mix"] == "domain"
        for p in answer["predictions"]:  # sport's two experts, weights 0.25 and 0.35 of 0.6
            assert p["domain"] == "sport"
            assert [(e["expert"], e["weight"]) for e in p["experts"]] == [
                ("22", pytest.approx(0.35 / 0.6, abs=1e-5)),
                ("21", pytest.approx(0.25 / 0.6, abs=1e-5))]
        picked = _predict({"texts": TEXTS, "top_k": 1}).json()
        assert picked["mix"] == "top_k"  # the single likeliest expert
        assert all(p["experts"] == [{"expert": "23", "name": "23", "weight": 1.0}]
                   and p["domain"] == "spam" for p in picked["predictions"])
    finally:
        serving.reset()
