from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from experts.ml.artifact import load_expert, save_expert
from experts.ml.backbone import load_backbone
from experts.ml.common import TrainingStopped
from experts.ml.data import DomainData, load_domain_dir
from experts.ml.features import FeatureCache
from training.ml.expert_train import ExpertTrainConfig, train_expert

REPO = Path(__file__).resolve().parents[3]


def _toy_domain(n: int = 60) -> DomainData:
    """Sport vs finance sentences: separable by which words occur."""
    sport = ["goal", "match", "team", "won", "game"]
    money = ["stock", "market", "price", "bank", "rates"]

    def rows(count, offset):
        out = []
        for i in range(count):
            words, label = (sport, "sport") if i % 2 else (money, "money")
            picked = [words[(i + offset + k) % 5] for k in range(1 + i % 4)]
            out.append((" ".join(["the", *picked]) + f" {i + offset}", label))
        return out

    return DomainData(name="toy", description="toy", labels=["money", "sport"],
                      train=rows(n, 0), dev=rows(20, 1000))


@pytest.mark.parametrize("kind", ["head", "branch"])
def test_it_trains_an_expert_and_reports_progress(kind, tiny_backbone, tmp_path):
    cache = FeatureCache(tmp_path / "cache", tiny_backbone)
    progress = []
    cfg = ExpertTrainConfig(kind=kind, epochs=3, patience=10, batch_size=16)
    trained = train_expert(cfg, backbone=tiny_backbone, cache=cache, domain=_toy_domain(),
                           on_progress=lambda *a: progress.append(a))
    assert trained.config.split_layer == (4 if kind == "head" else 2)
    assert len(trained.history) == 3
    assert 0.0 <= trained.metrics["dev_accuracy"] <= 1.0
    assert {"dev_macro_f1", "best_epoch", "n_train"} <= set(trained.metrics)
    assert progress[-1][0] == progress[-1][1]  # the last report is the last step
    assert not trained.expert.training
    folder = save_expert(trained.expert, tmp_path / "artifact", backbone=tiny_backbone,
                         training=trained.training, metrics=trained.metrics)
    loaded, manifest = load_expert(folder, expected_fingerprint=tiny_backbone.fingerprint)
    assert manifest["training"]["n_train"] == 60
    assert manifest["split_layer"] == trained.config.split_layer
    assert manifest["metrics"]["dev_accuracy"] == trained.metrics["dev_accuracy"]
    assert loaded.needs_tokens == (kind == "branch")


def test_it_is_reproducible_with_a_fixed_seed(tiny_backbone, tmp_path):
    cache = FeatureCache(tmp_path, tiny_backbone)
    cfg = ExpertTrainConfig(kind="head", epochs=2, seed=7, batch_size=16)
    a = train_expert(cfg, backbone=tiny_backbone, cache=cache, domain=_toy_domain())
    b = train_expert(cfg, backbone=tiny_backbone, cache=cache, domain=_toy_domain())
    assert all(torch.equal(x, y) for x, y in zip(
        a.expert.state_dict().values(), b.expert.state_dict().values(), strict=True))
    assert a.history == b.history


def test_it_stops_cleanly_when_asked(tiny_backbone, tmp_path):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(TrainingStopped):
        train_expert(ExpertTrainConfig(kind="head", epochs=50, batch_size=8),
                     backbone=tiny_backbone, cache=FeatureCache(tmp_path, tiny_backbone),
                     domain=_toy_domain(), should_stop=stop)
    assert len(calls) == 6


def test_it_rejects_a_split_layer_a_branch_cannot_use(tiny_backbone, tmp_path):
    with pytest.raises(ValueError, match="split_layer"):
        train_expert(ExpertTrainConfig(kind="branch", split_layer=4), backbone=tiny_backbone,
                     cache=FeatureCache(tmp_path, tiny_backbone), domain=_toy_domain())


def test_it_learns_news_topics_with_the_packaged_backbone(tmp_path):
    data_dir = Path(os.environ.get("MOECOLLAB_DATA_DIR") or REPO.parent / "shared" / "data")
    domain = load_domain_dir(data_dir / "news", max_train=800, seed=0)
    domain.dev = domain.dev[:400]
    backbone = load_backbone()
    trained = train_expert(ExpertTrainConfig(kind="head", seed=0), backbone=backbone,
                           cache=FeatureCache(tmp_path, backbone), domain=domain)
    assert trained.metrics["n_train"] == 800
    assert trained.metrics["dev_accuracy"] > 0.8  # chance is 0.25 on 4 balanced topics
    assert trained.metrics["dev_macro_f1"] > 0.8
