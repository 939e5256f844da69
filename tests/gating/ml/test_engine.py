"""The one engine on a tiny backbone: head and branch experts at different split layers train
into one gating model, survive the bundle round trip, serve through the Predictor exactly as
they evaluate, and count compute per routed input."""
from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from experts.ml.data import DomainData
from experts.ml.features import FeatureCache
from experts.ml.safetensors_header import header_metadata
from experts.ml.surface import DEFAULT_BUCKETS, LATEST_SURFACE_VERSION
from experts.ml.trunk import TrunkSpec
from gating.ml.bundle import GatingError, bundle_bytes, load_bundle, save_bundle
from gating.ml.evaluate import evaluate_gating, predict_moe
from gating.ml.predictor import Predictor
from gating.ml.training import GatingTrainConfig, train_gating
from tests.experts.ml.tiny import TINY_LAYERS
from training.ml.expert_train import ExpertTrainConfig, train_expert

TOPICS = {"sport": (["goal", "match", "team", "game"], ["won", "lost"]),
          "money": (["stock", "market", "bank", "price"], ["rose", "fell"])}


def _rows(domain: str, n: int, seed: int) -> list[tuple[str, str]]:
    """Texts of a topic's words; the label is which verb the text uses."""
    words, verbs = TOPICS[domain]
    rng = random.Random(f"{domain}-{seed}")
    rows = []
    for _ in range(n):
        verb = rng.choice(verbs)
        text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
        rows.append((f"the {text} {verb}", verb))
    return rows


def _domains() -> list[DomainData]:
    return [DomainData(name=d, description="", labels=list(TOPICS[d][1]),
                       train=_rows(d, 48, 0), dev=_rows(d, 16, 1), test=_rows(d, 16, 2))
            for d in sorted(TOPICS)]


@pytest.fixture(scope="module")
def mixed(tiny_backbone, tmp_path_factory):
    """A head expert (money, reads layer 4) and a branch expert (sport, from layer 2)."""
    cache = FeatureCache(tmp_path_factory.mktemp("cache"), tiny_backbone)
    domains = _domains()
    kinds = {"money": ExpertTrainConfig(kind="head", epochs=3, device="cpu"),
             "sport": ExpertTrainConfig(kind="branch", split_layer=2, epochs=1, device="cpu")}
    experts = [train_expert(kinds[d.name], backbone=tiny_backbone, cache=cache, domain=d).expert
               for d in domains]
    cfg = GatingTrainConfig(epochs=3, device="cpu")
    result = train_gating(cfg, experts=experts, keys=["m1", "s1"], domains=domains,
                          cache=cache)
    return result, cache, domains


def test_it_reads_one_trunk_for_experts_of_different_layers(mixed):
    result, _, _ = mixed
    model = result.model
    assert [e.config.kind for e in model.moe.experts] == ["head", "branch"]
    assert model.moe.router.config.input_layers == (TINY_LAYERS, 0)
    # the head reads pooled layer 4, the branch token states of layer 2, the router 4 and 0
    # ... and, by default, the texts' surface features (hashed character n-grams)
    assert model.spec == TrunkSpec(pooled=(0, TINY_LAYERS), tokens=(2,), surface=DEFAULT_BUCKETS,
                                   surface_version=LATEST_SURFACE_VERSION)
    assert model.moe.router.config.surface_buckets == DEFAULT_BUCKETS
    assert model.moe.router.config.surface_version == LATEST_SURFACE_VERSION
    assert model.spec.depth == TINY_LAYERS
    assert result.curves["regularized"] and result.curves["unregularized"]


def test_it_round_trips_the_bundle(mixed, tmp_path):
    model = mixed[0].model
    sha = save_bundle(model, tmp_path / "bundle.safetensors")
    assert len(sha) == 64 and not list(tmp_path.glob(".tmp-*"))
    loaded = load_bundle(tmp_path / "bundle.safetensors", expected_fingerprint=model.fingerprint)
    assert loaded.keys == model.keys and loaded.spec == model.spec
    assert loaded.moe.router.config == model.moe.router.config
    assert loaded.moe.label_space == model.moe.label_space
    for a, b in ((model.moe, loaded.moe), (model.unregularized, loaded.unregularized)):
        want, got = a.state_dict(), b.state_dict()
        assert set(want) == set(got)
        assert all(torch.equal(want[k], got[k]) for k in want)  # float32 bytes read back
    with pytest.raises(GatingError, match="built on backbone"):
        load_bundle(tmp_path / "bundle.safetensors", expected_fingerprint="0" * 64)


def test_a_bundle_from_before_surface_versions_reads_the_features_it_learned(mixed, tmp_path,
                                                                            tiny_backbone):
    # Written by the code before versions existed: no surface_version in the router's config;
    # its bucket table was learned on version 1's n-grams, so that is what it must be fed.
    model, cache, domains = mixed
    model = model.model
    data = bundle_bytes(model)
    meta = json.loads(header_metadata(data, max_header=1 << 20)["gating"])
    del meta["router"]["surface_version"]
    old = tmp_path / "old.safetensors"
    old.write_bytes(save_safetensors_bytes(load_safetensors_bytes(data),
                                           metadata={"gating": json.dumps(meta)}))
    loaded = load_bundle(old)
    assert loaded.moe.router.config.surface_version == 1
    assert loaded.spec.surface_version == 1 and loaded.unregularized.config.surface_version == 1
    texts = [t for d in domains for t, _ in d.test]
    served = Predictor(tiny_backbone, loaded, batch_size=5).predict(texts)  # version-1 bags
    assert len(served) == len(texts)
    with pytest.raises(ValueError, match="version 2"):  # fed the new features: refused
        predict_moe(loaded.moe, cache.load(texts, model.spec))


def test_it_refuses_a_file_that_is_not_a_bundle(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(GatingError, match="not a readable gating bundle"):
        load_bundle(tmp_path / "x.safetensors")


def test_it_serves_what_it_evaluates(mixed, tiny_backbone):
    model, cache, domains = mixed[0].model, mixed[1], mixed[2]
    texts = [t for d in domains for t, _ in d.test]
    served = Predictor(tiny_backbone, model, batch_size=5).predict(texts)
    evaluated = predict_moe(model.moe, cache.load(texts, model.spec))
    names = model.moe.label_space.names
    # Two code paths (the live trunk and the cached one, other batches): the same choices.
    assert [f"{p['domain']}:{p['label']}" for p in served] == [
        names[i] for i in evaluated.pred.tolist()]
    assert [p["experts"][0]["expert"] for p in served] == [
        model.keys[i] for i in evaluated.topk_idx[:, 0].tolist()]


def test_it_counts_a_branch_experts_layers_only_for_inputs_routed_to_it(mixed):
    model, cache, domains = mixed[0].model, mixed[1], mixed[2]
    report = evaluate_gating(model, cache=cache, domains=domains, flops_per_domain=6,
                             credit_groups={"alice": ["m1"], "bob": ["s1"]})
    c = report["compute"]
    own, paid = c["expert_flops_per_input"], c["expert_routed_flops_per_input"]
    share = c["dispatch_share"]
    assert own["s1"] > 5 * own["m1"]  # two transformer layers against an MLP
    assert sum(share.values()) == pytest.approx(1.0)  # top-1: one expert per input
    assert 0 < share["s1"] < 1  # both experts are used, so routed is cheaper than dense
    for key in own:  # an expert costs, routed, only on the inputs dispatched to it
        assert 0 < paid[key] < own[key]
    shared = c["trunk_flops_per_input"] + c["router_flops_per_input"]
    assert c["routed_flops_per_input"] == pytest.approx(shared + sum(paid.values()), rel=1e-9)
    assert c["dense_flops_per_input"] == pytest.approx(shared + sum(own.values()), rel=1e-9)
    assert c["trunk_flops_per_input"] > 0
    assert report["eval_split"] == {"money": "test", "sport": "test"}
    assert set(report["credit"]) == {"m1", "s1"}
    assert set(report["credit_by_contributor"]) == {"alice", "bob"}
    assert report["router_layers"] == [TINY_LAYERS, 0]
    assert {e["kind"] for e in report["experts"]} == {"head", "branch"}


def test_it_names_an_expert_with_non_finite_outputs(mixed):
    _, cache, domains = mixed
    model = mixed[0].model
    head = model.moe.experts[0]
    broken = type(head)(head.config)
    broken.load_state_dict(head.state_dict())
    with torch.no_grad():
        broken.head.fc2.bias.fill_(float("nan"))
    with pytest.raises(GatingError, match="expert m1 gives non-finite outputs"):
        train_gating(GatingTrainConfig(epochs=1, compare_unregularized=False),
                     experts=[broken, model.moe.experts[1]], keys=["m1", "s1"],
                     domains=domains, cache=cache)
