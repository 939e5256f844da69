"""Builders shared by the marketplace page tests (HTML views)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from experts import services
from experts.models import Domain, Expert, ExpertVersion

LABELS = ["neg", "pos"]


def make_domain(user, name: str = "toy", labels=None) -> Domain:
    return services.domain_create(user=user, name=name, description=f"{name} texts",
                                  labels=labels or list(LABELS))


def make_expert(user, domain: Domain, name: str = "sharp", **fields) -> Expert:
    return services.expert_create(user=user, domain=domain, name=name, license="MIT",
                                  description=fields.pop("description", "A sharp classifier"),
                                  **fields)


def make_version(expert: Expert, *, status: str, number: int | None = None, accuracy=None,
                 macro_f1=None, with_files: bool = False) -> ExpertVersion:
    """A version row in any status, as if validation had run (no job, no worker)."""
    number = number or (expert.versions.count() + 1)
    metrics = {}
    if accuracy is not None:
        metrics = {"test_accuracy": accuracy, "test_macro_f1": macro_f1 or accuracy,
                   "n_eval": 40, "eval_split": "test"}
    fields = {}
    if with_files:
        folder = f"experts/{expert.pk}/v{number}"
        fields = {
            "manifest_file": default_storage.save(f"{folder}/manifest.json",
                                                  ContentFile(b'{"kind": "head"}')),
            "weights": default_storage.save(f"{folder}/weights.safetensors",
                                            ContentFile(b"WEIGHTS-" + str(number).encode())),
        }
    return ExpertVersion.objects.create(
        expert=expert, number=number, status=status, kind="head", metrics=metrics,
        n_parameters=3330, size_bytes=13320, backbone_fingerprint="ab" * 32,
        manifest={"backbone": {"name": "tiny-backbone", "fingerprint": "ab" * 32}},
        weights_sha256=f"{expert.pk:04d}{number:04d}".ljust(64, "0"),
        training_params={"validation_job": None}, checks=[
            {"name": "manifest schema", "ok": True, "message": "ok", "where": "upload"}],
        **fields)


def real_artifact(*, domain: str = "toy", labels=None, seed: int = 0) -> tuple[bytes, bytes]:
    """(manifest.json, weights.safetensors) of a tiny head expert on the platform's backbone."""
    import torch

    from experts.ml.artifact import save_expert
    from experts.ml.modules import ExpertConfig, build_expert
    from experts.uploads import platform_backbone

    backbone = platform_backbone()
    torch.manual_seed(seed)
    cfg = ExpertConfig(kind="head", domain=domain, labels=labels or list(LABELS),
                       hidden_size=backbone["hidden_size"], split_layer=backbone["num_layers"],
                       mlp_hidden=8)
    with tempfile.TemporaryDirectory() as tmp:
        out = save_expert(build_expert(cfg), Path(tmp), backbone=SimpleNamespace(**backbone),
                          training={"epochs": 1, "seed": seed}, metrics={})
        return (out / "manifest.json").read_bytes(), (out / "weights.safetensors").read_bytes()


def upload_files(manifest: bytes, weights: bytes) -> dict:
    return {"manifest": SimpleUploadedFile("manifest.json", manifest, "application/json"),
            "weights": SimpleUploadedFile("weights.safetensors", weights,
                                          "application/octet-stream")}


def dataset_file(rows: list[tuple[str, str]], name: str = "data.jsonl") -> SimpleUploadedFile:
    body = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows)
    return SimpleUploadedFile(name, body.encode(), "application/jsonl")
