"""LoRA experts in PEFT's own format, on a tiny random BERT: the adapter a plain peft script
saves is checked with peft's own layout, served in one mixed-adapter forward exactly as
PeftModel.from_pretrained computes it, and joins a gating model next to head experts."""
from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification

from experts.ml.features import FeatureCache
from experts.ml.lora import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    LoraBank,
    check_adapter_config,
    expected_adapter_tensors,
    lora_expert_from_state,
    save_lora_artifact,
)
from experts.ml.surface import DEFAULT_BUCKETS
from experts.ml.trunk import TrunkSpec
from gating.ml.bundle import GatingError, load_bundle, save_bundle
from gating.ml.evaluate import evaluate_gating, predict_moe
from gating.ml.predictor import Predictor
from gating.ml.training import GatingTrainConfig, train_gating
from tests.experts.ml.tiny import TINY_LAYERS
from tests.gating.ml.test_engine import _domains
from training.ml.expert_train import ExpertTrainConfig, train_expert


def plain_peft_folder(model_dir, out, *, n_labels: int, seed: int, **lora):
    """What a contributor's own transformers + peft script writes (no code of this project)."""
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=n_labels)
    config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8,
                        target_modules=["query", "value"], **lora)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # a trained adapter has non-zero B matrices
        for p in peft_model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.3)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {"a": plain_peft_folder(tiny_model_dir, root / "a", n_labels=3, seed=0),
            "b": plain_peft_folder(tiny_model_dir, root / "b", n_labels=2, seed=1)}


def _read(folder):
    return (json.loads((folder / ADAPTER_CONFIG_NAME).read_text()),
            load_file(str(folder / ADAPTER_WEIGHTS_NAME)))


def test_it_expects_exactly_what_peft_saves(adapters, tiny_model_dir):
    cfg, state = _read(adapters["a"])
    assert check_adapter_config(cfg, num_layers=TINY_LAYERS) == []
    expected = expected_adapter_tensors(cfg, hf_config=AutoConfig.from_pretrained(tiny_model_dir),
                                        n_labels=3)
    assert expected == {k: list(v.shape) for k, v in state.items()}
    assert expected["base_model.model.classifier.weight"] == [3, 32]


@pytest.mark.parametrize("change, message", [
    ({"peft_type": "PREFIX_TUNING"}, 'peft_type must be "LORA"'),
    ({"task_type": "CAUSAL_LM"}, "task_type must be \"SEQ_CLS\""),
    ({"r": 4096}, "r (the LoRA rank) must be an integer in 1..64"),
    ({"target_modules": ["query", "lm_head"]}, "do not exist in the backbone"),
    ({"target_modules": ".*"}, "must be a non-empty list of module names"),
    ({"auto_mapping": {"base_model_class": "os.system"}}, "option 'auto_mapping' is not supported"),
    ({"use_dora": True}, "option 'use_dora' is not supported"),
    ({"layers_to_transform": [0, 99]}, "layers_to_transform must be a list of layer indices"),
    ({"surprise": 1}, "unknown option 'surprise'"),
    ({"modules_to_save": ["bert.encoder"]}, "modules_to_save may only name the classification"),
])
def test_it_names_each_problem_of_an_adapter_config(adapters, change, message):
    cfg, _ = _read(adapters["a"])
    errors = check_adapter_config({**cfg, **change}, num_layers=TINY_LAYERS)
    assert any(message in e for e in errors), errors


def test_it_serves_several_adapters_in_one_forward_as_peft_computes_them(
        adapters, tiny_model_dir, tiny_backbone):
    texts = ["the cat won", "stock market fell now", "hello there", "a goal"]
    enc = tiny_backbone.tokenizer(texts, padding=True, return_tensors="pt")
    bank = LoraBank(tiny_backbone)
    experts = {}
    for key, n in (("a", 3), ("b", 2)):
        cfg, state = _read(adapters[key])
        experts[key] = lora_expert_from_state(cfg, state, backbone=tiny_backbone, domain=key,
                                              labels=[f"y{i}" for i in range(n)], key=key,
                                              bank=bank)
    names = ["a", "b", "a", "b"]
    with torch.no_grad():
        pooled = bank(enc["input_ids"], enc["attention_mask"], names)
        for key, n in (("a", 3), ("b", 2)):
            rows = [i for i, name in enumerate(names) if name == key]
            reference = PeftModel.from_pretrained(
                AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=n),
                adapters[key]).eval()(**enc).logits[rows]
            # one mixed batch against one model per adapter: the same math, other kernels
            torch.testing.assert_close(experts[key].head(pooled[rows]), reference,
                                       atol=1e-5, rtol=1e-4)
    # the trunk itself never carries an adapter
    assert not any("lora" in n for n, _ in tiny_backbone.model.named_parameters())


@pytest.fixture(scope="module")
def mixed_lora(tiny_backbone, tmp_path_factory):
    cache = FeatureCache(tmp_path_factory.mktemp("lora-cache"), tiny_backbone)
    domains = _domains()
    kinds = {"money": ExpertTrainConfig(kind="head", epochs=3, device="cpu"),
             "sport": ExpertTrainConfig(kind="lora", epochs=2, device="cpu")}
    trained = {d.name: train_expert(kinds[d.name], backbone=tiny_backbone, cache=cache,
                                    domain=d) for d in domains}
    result = train_gating(GatingTrainConfig(epochs=3), experts=[t.expert for t in
                          trained.values()], keys=["m1", "s1"], domains=domains, cache=cache)
    return trained, result.model, cache, domains


def test_it_trains_a_lora_expert_into_a_folder_peft_loads(mixed_lora, tiny_backbone,
                                                          tiny_model_dir, tmp_path):
    trained = mixed_lora[0]["sport"]
    assert trained.config.kind == "lora" and trained.metrics["best_epoch"] >= 1
    out = save_lora_artifact(trained.expert, tmp_path / "sport", backbone=tiny_backbone,
                             training=trained.training, metrics=trained.metrics)
    assert {p.name for p in out.iterdir()} == {
        ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, "README.md", "manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "lora" and manifest["labels"] == ["won", "lost"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: peft" in card and "base_model:" in card
    model = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2), out)
    enc = tiny_backbone.tokenizer(["the goal team won"], return_tensors="pt")
    with torch.no_grad():
        ours = trained.expert(type("T", (), {"input_ids": enc["input_ids"],
                                             "mask": enc["attention_mask"]})())
        torch.testing.assert_close(model.eval()(**enc).logits, ours, atol=1e-5, rtol=1e-4)


def test_it_mixes_lora_and_head_experts_and_round_trips_the_bundle(mixed_lora, tiny_backbone,
                                                                   tmp_path):
    _, model, cache, domains = mixed_lora
    assert model.spec == TrunkSpec(pooled=(0, TINY_LAYERS), tokens=(), ids=True,
                                  surface=DEFAULT_BUCKETS)
    save_bundle(model, tmp_path / "b.safetensors")
    with pytest.raises(GatingError, match="needs the backbone"):
        load_bundle(tmp_path / "b.safetensors")
    loaded = load_bundle(tmp_path / "b.safetensors", backbone=tiny_backbone)
    texts = [t for d in domains for t, _ in d.test]
    trunks = cache.load(texts, model.spec)
    want, got = predict_moe(model.moe, trunks), predict_moe(loaded.moe, trunks)
    assert torch.equal(want.pred, got.pred)
    torch.testing.assert_close(got.probs, want.probs, atol=1e-5, rtol=1e-4)
    served = Predictor(tiny_backbone, loaded).predict(texts)
    names = loaded.moe.label_space.names
    assert [f"{p['domain']}:{p['label']}" for p in served] == [names[i] for i in got.pred]


def test_it_counts_a_lora_experts_backbone_pass_only_for_its_inputs(mixed_lora):
    _, model, cache, domains = mixed_lora
    c = evaluate_gating(model, cache=cache, domains=domains, flops_per_domain=4)["compute"]
    own, paid = c["expert_flops_per_input"], c["expert_routed_flops_per_input"]
    assert own["s1"] > 0.8 * c["trunk_flops_per_input"]  # a whole backbone pass, adapted
    assert 0 < paid["s1"] < own["s1"]
    shared = c["trunk_flops_per_input"] + c["router_flops_per_input"]
    assert c["routed_flops_per_input"] == pytest.approx(shared + sum(paid.values()), rel=1e-9)
