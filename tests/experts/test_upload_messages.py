"""Refusals say what is wrong in words and what to do: a training that reproduced an existing
version names it, random bytes are "not a safetensors file", swapped files are "swapped", a
dataset lists all its bad lines, and no message names a Python class."""
from __future__ import annotations

import os
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from experts import services
from experts.datasets import MAX_REPORTED_LINES
from experts.models import ExpertVersion, Notification
from moecollab_site.errors import DomainError, reason_of
from tests.experts.pages_support import dataset_file, real_artifact, upload_files
from tests.helpers import api_client_for, make_domain, make_expert
from training import runner
from training.models import Job

# "DomainError: ...", "ValueError: ...", "UnicodeDecodeError" and the like.
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Exceeded|Refused|Rejected)\b")
ROWS = [(f"a wonderful film, part {i}", "pos") for i in range(12)] + [
    (f"a dreadful film, part {i}", "neg") for i in range(12)]


@pytest.fixture
def expert(owner, maintainer):
    return make_expert(owner, make_domain(created_by=maintainer), "sharp")


def _upload_error(owner, expert, manifest: bytes, weights: bytes) -> str:
    with pytest.raises(DomainError) as refused:
        services.expert_version_upload(user=owner, expert=expert,
                                       **upload_files(manifest, weights))
    assert not ExpertVersion.objects.exists()
    assert not CLASS_NAME.search(refused.value.message), refused.value.message
    return refused.value.message


def test_it_calls_random_bytes_not_a_safetensors_file(owner, expert):
    manifest, _ = real_artifact()
    message = _upload_error(owner, expert, manifest, os.urandom(4096))
    assert message.startswith("safetensors header: this is not a safetensors file")
    assert "oversized header" not in message and "bytes declared" not in message


def test_it_names_a_pytorch_checkpoint_for_what_it_is(owner, expert):
    manifest, _ = real_artifact()
    message = _upload_error(owner, expert, manifest, b"PK\x03\x04" + os.urandom(500))
    assert "not a safetensors file: it is a zip archive, as torch.save writes" in message


def test_it_says_swapped_manifest_and_weights_look_swapped(owner, expert):
    manifest, weights = real_artifact()
    message = _upload_error(owner, expert, weights, manifest)
    assert message.startswith("manifest json: these look swapped")
    assert "send manifest.json as manifest and weights.safetensors as weights" in message
    assert "codec" not in message and "decode" not in message


def test_it_says_the_manifest_file_holds_weights_when_both_are_weights(owner, expert):
    _, weights = real_artifact()
    message = _upload_error(owner, expert, weights, weights)
    assert message == ("manifest json: the file sent as manifest holds safetensors weights, "
                       "not JSON; send manifest.json as manifest")


def test_it_says_the_weights_file_holds_json_when_both_are_manifests(owner, expert):
    manifest, _ = real_artifact()
    message = _upload_error(owner, expert, manifest, manifest)
    assert message.startswith("safetensors header: the file sent as weights holds JSON")


def test_it_still_accepts_a_real_artifact(owner, expert):
    version = services.expert_version_upload(user=owner, expert=expert,
                                             **upload_files(*real_artifact()))
    assert version.status == ExpertVersion.Status.VALIDATING


def test_it_reports_every_bad_label_of_a_csv_at_once(owner, expert):
    lines = ["text,label", "fine,pos", "typo,postive", "fine too,neg", "odd,neutral",
             "also odd,neutral", ",pos"]
    csv = SimpleUploadedFile("data.csv", ("\n".join(lines) + "\n").encode(), "text/csv")
    with pytest.raises(DomainError) as refused:
        services.expert_version_train_request(user=owner, expert=expert, dataset=csv)
    assert refused.value.message == (
        "data.csv: 4 lines have problems, fix them all and upload again: line 3: unknown "
        "label 'postive'; lines 5, 6: unknown label 'neutral'; line 7: empty or missing text "
        "(this domain has: neg, pos)")
    assert not ExpertVersion.objects.exists()


def test_it_caps_the_lines_it_lists_and_counts_the_rest(owner, expert):
    bad = MAX_REPORTED_LINES + 5
    lines = ["text,label"] + [f"row {i},nope{i}" for i in range(bad)]
    csv = SimpleUploadedFile("big.csv", ("\n".join(lines) + "\n").encode(), "text/csv")
    response = api_client_for(owner).post(f"/api/v1/experts/{expert.pk}/train/",
                                          {"dataset": csv}, format="multipart")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith(f"big.csv: {bad} lines have problems")
    assert f"line {MAX_REPORTED_LINES + 1}: unknown label 'nope{MAX_REPORTED_LINES - 1}'" in message
    assert f"line {MAX_REPORTED_LINES + 2}:" not in message
    assert message.count("unknown label") == MAX_REPORTED_LINES
    assert "; and 5 more bad lines" in message


@pytest.mark.parametrize("exc, words", [
    (DomainError("duplicate weights: identical to a/b v1"), "duplicate weights: identical to"),
    (KeyError("dataset"), "a value it needs ('dataset') is missing"),
    (ZeroDivisionError("division by zero"), "an unexpected error in the platform (division"),
    (MemoryError(), "the worker ran out of memory"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
     "the worker ran out of memory (CUDA out of memory. Tried to allocate 2.00 GiB)"),
    (RuntimeError(), "an unexpected error in the platform"),
])
def test_it_words_every_failure_without_a_class_name(exc, words):
    text = reason_of(exc)
    assert words in text and not CLASS_NAME.search(text)


def _train(owner, expert) -> tuple[ExpertVersion, Job]:
    version = services.expert_version_train_request(
        user=owner, expert=expert, dataset=dataset_file(ROWS), kind="head", epochs=3)
    job_id = version.training_params["training_job"]
    runner.run_job(job_id, worker="w1")
    version.refresh_from_db()
    return version, Job.objects.get(pk=job_id)


def test_a_training_that_reproduces_a_version_points_at_it_and_creates_nothing(
        owner, expert, client):
    first, first_job = _train(owner, expert)
    assert first_job.status == Job.Status.SUCCEEDED, first_job.error
    assert first.weights_sha256

    second, job = _train(owner, expert)  # same data, same settings: the same weights

    # The job did what was asked and says where the result is; it did not fail.
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.metrics["existing_version"] == first.label == "alice/sharp v1"
    assert job.metrics["existing_version_link"] == f"/experts/{expert.pk}/versions/1/"
    assert job.outcome["text"].startswith("training reproduced alice/sharp v1 exactly")
    assert "nothing new was created" in job.outcome["text"]
    # No second copy of the weights, no validation job for it; the placeholder says why.
    assert ExpertVersion.objects.exclude(weights="").count() == 1
    assert Job.objects.filter(kind=Job.Kind.VALIDATE_EXPERT).count() == 1
    assert second.status == ExpertVersion.Status.CANCELLED and not second.weights
    assert "reproduced alice/sharp v1 exactly" in second.error
    assert "Validation failed" not in second.error and not CLASS_NAME.search(second.error)
    note = Notification.objects.filter(user=owner).latest("pk")
    assert "nothing new was created" in note.message
    assert note.link == f"/experts/{expert.pk}/versions/1/"

    client.force_login(owner)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "training reproduced alice/sharp v1 exactly" in page
    assert f'href="/experts/{expert.pk}/versions/1/">Open alice/sharp v1</a>' in page
    assert not CLASS_NAME.search(page.split("<h2>Log</h2>")[0])
