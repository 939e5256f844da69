"""Domains, splits and approved expert versions for the gating tests.

`gating_artifacts` trains small real head experts once per session (Django-free, on the packaged
backbone); `make_gating_setup` turns them (or placeholders) into database rows.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from tests.helpers import data_dir

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
    from experts.ml.features import FeatureCache
    from training.ml.data import DomainData
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


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def make_domain(name: str, *, kinds=("train", "dev", "test")):
    from experts.models import DataSplit, Domain

    domain = Domain.objects.create(name=name, labels=domain_labels(name))
    splits = domain_splits(name)
    for kind in kinds:
        payload = _jsonl(splits[kind])
        split = DataSplit(domain=domain, kind=kind, is_private=kind == "test",
                          n_rows=len(splits[kind]), sha256=hashlib.sha256(payload).hexdigest())
        split.file.save(f"{name}-{kind}.jsonl", ContentFile(payload), save=False)
        split.save()
    return domain


def make_version(*, owner, domain, fingerprint="f" * 64, split_layer=6, artifact=None,
                 status="approved", name=None):
    from experts.models import Expert, ExpertVersion

    expert = Expert.objects.create(owner=owner, domain=domain, name=name or f"{domain.name}-x")
    version = ExpertVersion(expert=expert, number=1, status=status, kind="head",
                            backbone_fingerprint=fingerprint,
                            manifest={"split_layer": split_layer, "domain": domain.name})
    if artifact is not None:
        manifest = (artifact.folder / "manifest.json").read_bytes()
        version.manifest = json.loads(manifest)
        version.manifest_file.save(f"{domain.name}/manifest.json", ContentFile(manifest),
                                   save=False)
        version.weights.save(f"{domain.name}/weights.safetensors",
                             ContentFile((artifact.folder / "weights.safetensors").read_bytes()),
                             save=False)
    version.save()
    return version


@pytest.fixture
def make_gating_setup():
    """Domains with splits and one approved version per domain (real artifacts if given)."""

    def build(owner, *, artifacts=None, domains=DOMAINS, kinds=("train", "dev", "test")):
        versions = []
        for i, name in enumerate(domains):
            domain = make_domain(name, kinds=kinds)
            artifact = artifacts[i] if artifacts else None
            versions.append(make_version(
                owner=owner, domain=domain, artifact=artifact,
                fingerprint=artifact.fingerprint if artifact else "f" * 64,
                split_layer=artifact.split_layer if artifact else 6,
            ))
        return versions

    return build


@pytest.fixture
def clean_media(settings):
    yield
    for sub in ("datasets", "experts", "gating"):
        shutil.rmtree(Path(settings.MEDIA_ROOT) / sub, ignore_errors=True)
