"""An upload is checked against the platform's backbone, not only its fingerprint: layers, width,
split layer and a branch's layer config, each refused at upload naming the field and the
platform's value, instead of being accepted and failing on a worker with a raw exception."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from experts.models import ExpertVersion
from experts.uploads import platform_backbone
from tests.helpers import api_client_for, make_artifact, media_files
from training.models import Job


def _upload(owner, expert, **artifact):
    with tempfile.TemporaryDirectory() as tmp:
        manifest, weights = make_artifact(Path(tmp), **artifact)
        files = {"manifest": SimpleUploadedFile("manifest.json", manifest.read_bytes()),
                 "weights": SimpleUploadedFile("weights.safetensors", weights.read_bytes())}
    return api_client_for(owner).post(f"/api/v1/experts/{expert.pk}/versions/", files,
                                      format="multipart")


def _refused(response, media_root, *fragments: str) -> None:
    assert response.status_code == 400, response.content[:500]
    error = response.json()["error"]
    assert error["code"] == "invalid_artifact"
    assert error["message"].startswith("backbone: "), error["message"]
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    assert ExpertVersion.objects.count() == 0 and Job.objects.count() == 0
    assert media_files(media_root) == []


def test_it_refuses_a_hidden_size_other_than_the_platforms(owner, expert, media_root):
    platform = platform_backbone()
    response = _upload(owner, expert, backbone={"hidden_size": 64})
    _refused(response, media_root,
             f"manifest.backbone.hidden_size is 64; the platform's backbone {platform['name']} "
             f"has hidden size {platform['hidden_size']}")


def test_it_refuses_a_layer_count_other_than_the_platforms(owner, expert, media_root):
    platform = platform_backbone()
    response = _upload(owner, expert, backbone={"num_layers": 256})
    _refused(response, media_root,
             f"manifest.backbone.num_layers is 256; the platform's backbone {platform['name']} "
             f"has layers {platform['num_layers']}")


def test_it_refuses_a_split_layer_past_the_platforms_layers(owner, expert, media_root):
    layers = platform_backbone()["num_layers"]
    response = _upload(owner, expert, backbone={"num_layers": 256}, split_layer=200)
    _refused(response, media_root, "manifest.backbone.num_layers is 256",
             "manifest.split_layer is 200; on the platform's backbone",
             f"({layers} layers) a head expert's split_layer must be in 0..{layers}")


@pytest.mark.parametrize(("key", "value"), [("hidden_act", "relu"),
                                            ("intermediate_size", 64),
                                            ("model_type", "roberta")])
def test_it_refuses_a_branch_whose_layers_are_not_the_platforms(key, value, owner, expert,
                                                               media_root):
    ours = platform_backbone()["layer_config"][key]
    response = _upload(owner, expert, kind="branch", layer_config={key: value})
    _refused(response, media_root,
             f"manifest.architecture.layer_config.{key} is {value!r}; the platform's "
             f"backbone {platform_backbone()['name']} has {ours!r}")


def test_it_accepts_a_branch_on_the_platforms_layers_whatever_its_dropout(owner, expert):
    """Dropout acts only while training: a contributor's own rate is no reason to refuse."""
    response = _upload(owner, expert, kind="branch",
                       layer_config={"hidden_dropout_prob": 0.3})
    assert response.status_code == 201, response.content[:500]
    checks = {c["name"]: c for c in ExpertVersion.objects.get().checks}
    assert checks["backbone"]["ok"]


def test_it_accepts_every_split_layer_of_the_platforms_backbone(owner, expert):
    layers = platform_backbone()["num_layers"]
    for seed, split in enumerate((0, layers)):
        response = _upload(owner, expert, split_layer=split, seed=seed)
        assert response.status_code == 201, response.content[:500]
