"""The whole contribution, through the API, with a real worker: sign up, upload, validated,
approved, ranked."""
from __future__ import annotations

import pytest
from django.core.management import call_command

from tests.helpers import train_real_artifact, wait_for, write_domain_slice
from training.models import Job

pytestmark = pytest.mark.worker


def test_it_takes_an_engine_expert_from_upload_to_the_leaderboard(
    celery_worker_process, shared_data, tmp_path, maintainer, client, settings
):
    from rest_framework.test import APIClient

    folder = write_domain_slice(shared_data / "news", tmp_path / "data" / "news",
                                n_train=240, n_dev=80, n_test=120)
    call_command("import_domains", str(tmp_path / "data"))
    artifact = train_real_artifact(folder, tmp_path / "artifact",
                                   cache_dir=settings.MOECOLLAB_FEATURE_CACHE_DIR)

    # A new contributor signs up in the browser, then uses the API with a token.
    signup = client.post("/signup/", {"username": "carol", "email": "carol@example.org",
                                      "password1": "a-long-Passphrase-42",
                                      "password2": "a-long-Passphrase-42"})
    assert signup.status_code == 302
    api = APIClient()
    token = api.post("/api/v1/auth/token/", {"username": "carol",
                                             "password": "a-long-Passphrase-42"}).json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    expert = api.post("/api/v1/experts/", {"domain": "news", "name": "news-topics",
                                           "description": "AG News topics"}, format="json")
    assert expert.status_code == 201, expert.content
    expert_id = expert.json()["id"]
    with open(artifact / "manifest.json", "rb") as m, open(artifact / "weights.safetensors",
                                                           "rb") as w:
        uploaded = api.post(f"/api/v1/experts/{expert_id}/versions/",
                            {"manifest": m, "weights": w}, format="multipart")
    assert uploaded.status_code == 201, uploaded.content
    version_url = f"/api/v1/experts/{expert_id}/versions/1/"

    def validated():
        body = api.get(version_url).json()
        return body if body["status"] not in ("submitted", "validating") else None

    version = wait_for(validated, timeout=240, what="validation")
    assert version["status"] == "awaiting_review", version
    worker_checks = [c for c in version["checks"] if c["where"] == "worker"]
    assert worker_checks and all(c["ok"] for c in worker_checks)
    assert version["metrics"]["eval_split"] == "test"
    assert version["metrics"]["n_eval"] == 120
    assert version["metrics"]["test_accuracy"] > 0.6  # four topics: chance is 0.25
    notes = api.get("/api/v1/notifications/").json()["results"]
    assert "passed validation" in notes[0]["message"]

    boss = APIClient()
    boss.force_authenticate(maintainer)
    review = boss.post(f"{version_url}review/", {"action": "approve", "comment": "welcome"},
                       format="json")
    assert review.status_code == 200 and review.json()["status"] == "approved"

    def ranked():
        rows = api.get("/api/v1/leaderboards/domains/news/").json()["results"]
        return rows or None

    rows = wait_for(ranked, timeout=120, what="the leaderboard refresh")
    assert rows[0]["contributor"] == "carol" and rows[0]["rank"] == 1
    assert rows[0]["accuracy"] == version["metrics"]["test_accuracy"]
    assert Job.objects.filter(kind=Job.Kind.REFRESH_LEADERBOARDS,
                              status=Job.Status.SUCCEEDED).exists()
