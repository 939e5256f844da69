"""The whole contribution in the browser: sign up, create an expert, upload it, see it validated,
a maintainer approves it, it is ranked. Jobs run in this process instead of on a worker."""
from __future__ import annotations

import re

from django.core.files.uploadedfile import SimpleUploadedFile

from experts.models import ExpertVersion
from tests.experts.pages_support import real_artifact, upload_files
from training.models import Job
from training.runner import run_job


def _run_queued(kind: str) -> Job:
    import experts.handlers  # noqa: F401 - registers the marketplace's job handlers

    job = Job.objects.filter(kind=kind, status=Job.Status.QUEUED).get()
    assert run_job(job.pk, worker="inline-test") == Job.Status.SUCCEEDED, job
    return job


def test_it_takes_an_expert_from_sign_up_to_the_leaderboard(client, maintainer, settings,
                                                             tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MOECOLLAB_FEATURE_CACHE_DIR = tmp_path / "features"
    settings.MOECOLLAB_DEVICE = "cpu"

    # A maintainer sets up the domain and its private test split.
    client.force_login(maintainer)
    client.post("/experts/domains/new/", {"name": "toy", "labels": "neg\npos"})
    test_split = b"text,label\n" + b"".join(
        f"{word} {i},{label}\n".encode() for i in range(6)
        for word, label in (("awful", "neg"), ("lovely", "pos")))
    client.post("/experts/domains/toy/splits/",
                {"kind": "test", "file": SimpleUploadedFile("test.csv", test_split)})
    client.logout()

    # A newcomer signs up, creates an expert and uploads an artifact made by the engine.
    assert client.post("/signup/", {"username": "carol", "email": "carol@example.org",
                                    "password1": "a-long-Passphrase-42",
                                    "password2": "a-long-Passphrase-42"}).status_code == 302
    created = client.post("/experts/new/", {"domain": "toy", "name": "toy-sentiment",
                                            "license": "MIT"})
    card = created["Location"]
    uploaded = client.post(card + "upload/", upload_files(*real_artifact(seed=7)))
    version_url = uploaded["Location"]
    assert version_url == card + "versions/1/"
    assert "Validating" in client.get(version_url).content.decode()

    _run_queued(Job.Kind.VALIDATE_EXPERT)
    page = client.get(version_url).content.decode()
    assert "Awaiting review" in page and "version.js" not in page
    assert page.count('aria-label="failed"') == 0
    assert "loads and runs" in page and "Examples (n)</td><td>12" in page
    assert "passed validation" in client.get("/experts/notifications/").content.decode()
    accuracy = ExpertVersion.objects.get().metrics["test_accuracy"]

    # A maintainer finds it in the queue and approves it.
    client.force_login(maintainer)
    assert version_url in client.get("/experts/review/").content.decode()
    client.post(version_url + "review/", {"action": "approve", "comment": "welcome"})
    assert ExpertVersion.objects.get().status == ExpertVersion.Status.APPROVED

    _run_queued(Job.Kind.REFRESH_LEADERBOARDS)
    board = client.get("/leaderboards/").content.decode()
    row = re.search(r"<td>1</td>\s*<td><a href=\"(?P<url>[^\"]+)\">toy-sentiment v1</a></td>"
                    r"\s*<td>carol</td>\s*<td>(?P<acc>[0-9.]+)</td>", board)
    assert row and row["url"] == version_url and abs(float(row["acc"]) - accuracy) < 1e-3
    client.logout()
    card_page = client.get(card).content.decode()
    assert "Approved" in card_page and "versions/1/download/?file=weights" in card_page
