"""Domains, splits and approved expert versions for the gating tests.

`gating_artifacts` trains small real head experts once per session (Django-free, on the packaged
backbone); `make_gating_setup` turns them (or placeholders) into database rows with the
builders of tests/helpers.py.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import data_dir, make_domain, make_expert, make_version

DOMAINS = ("news", "spam", "sentiment")
ROWS_PER_SPLIT = 60


def _rows(domain: str, split: str, n: int, *, skip: int = 0) -> list[dict]:
    out = []
    with open(data_dir() / domain / f"{split}.jsonl", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i < skip:
                continue
            out.append(json.loads(line))
            if len(out) >= n:
                break
    return out


def domain_splits(domain: str) -> dict[str, list[dict]]:
    """60 rows each of train, dev and test (test drawn from the shared dev file, disjoint)."""
    return {
        "train": _rows(domain, "train", ROWS_PER_SPLIT),
        "dev": _rows(domain, "dev", ROWS_PER_SPLIT),
        "test": _rows(domain, "dev", ROWS_PER_SPLIT, skip=ROWS_PER_SPLIT),
    }


def domain_labels(domain: str) -> list[str]:
    return json.loads((data_dir() / domain / "domain.json").read_text())["labels"]


@dataclass
class Artifact:
    domain: str
    folder: Path
    fingerprint: str
    split_layer: int


@pytest.fixture(scope="session")
def gating_artifacts(tmp_path_factory) -> list[Artifact]:
    """One trained head expert per test domain, saved as real artifacts."""
    from django.conf import settings

    from experts.ml.artifact import save_expert
    from experts.ml.backbone import BackboneConfig, load_backbone
    from experts.ml.data import DomainData
    from experts.ml.features import FeatureCache
    from training.ml.expert_train import ExpertTrainConfig, train_expert

    backbone = load_backbone(BackboneConfig(device="cpu"))
    cache = FeatureCache(settings.MOECOLLAB_FEATURE_CACHE_DIR, backbone)
    root = tmp_path_factory.mktemp("gating-artifacts")
    out = []
    for name in DOMAINS:
        splits = domain_splits(name)
        data = DomainData(
            name=name, description="", labels=domain_labels(name),
            train=[(r["text"], r["label"]) for r in splits["train"]],
            dev=[(r["text"], r["label"]) for r in splits["dev"]],
        )
        trained = train_expert(ExpertTrainConfig(kind="head", epochs=6, device="cpu"),
                               backbone=backbone, cache=cache, domain=data)
        folder = save_expert(trained.expert, root / name, backbone=backbone,
                             training=trained.training, metrics=trained.metrics)
        out.append(Artifact(name, folder, backbone.fingerprint, trained.config.split_layer))
    return out


@pytest.fixture(scope="session")
def branch_artifact(tmp_path_factory) -> Artifact:
    """A branch expert for questions (its own copies of layers 4-6), trained on 60 rows."""
    from django.conf import settings

    from experts.ml.artifact import save_expert
    from experts.ml.backbone import BackboneConfig, load_backbone
    from experts.ml.data import DomainData
    from experts.ml.features import FeatureCache
    from training.ml.expert_train import ExpertTrainConfig, train_expert

    backbone = load_backbone(BackboneConfig(device="cpu"))
    cache = FeatureCache(settings.MOECOLLAB_FEATURE_CACHE_DIR, backbone)
    splits = domain_splits("questions")
    data = DomainData(name="questions", description="", labels=domain_labels("questions"),
                      train=[(r["text"], r["label"]) for r in splits["train"]],
                      dev=[(r["text"], r["label"]) for r in splits["dev"]])
    trained = train_expert(ExpertTrainConfig(kind="branch", split_layer=4, epochs=2,
                                             device="cpu"),
                           backbone=backbone, cache=cache, domain=data)
    folder = save_expert(trained.expert, tmp_path_factory.mktemp("branch") / "questions",
                         backbone=backbone, training=trained.training, metrics=trained.metrics)
    return Artifact("questions", folder, backbone.fingerprint, 4)


def shared_domain(name: str, *, kinds=("train", "dev", "test")):
    """A domain of the shared data sets with the 60-row splits of the given kinds."""
    splits = domain_splits(name)
    return make_domain(name, labels=domain_labels(name), splits={k: splits[k] for k in kinds})


@pytest.fixture
def make_gating_setup():
    """Domains with splits and one approved version per domain (real artifacts if given)."""

    def build(owner, *, artifacts=None, domains=DOMAINS, kinds=("train", "dev", "test")):
        versions = []
        for i, name in enumerate(domains):
            expert = make_expert(owner, shared_domain(name, kinds=kinds))
            versions.append(make_version(expert,
                                         artifact=artifacts[i].folder if artifacts else None))
        return versions

    return build


@pytest.fixture
def clean_media(settings):
    yield
    for sub in ("datasets", "experts", "gating"):
        shutil.rmtree(Path(settings.MEDIA_ROOT) / sub, ignore_errors=True)
