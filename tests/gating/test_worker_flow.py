"""With a real Celery worker: train, evaluate, promote and predict; and a worker killed mid-run."""
from __future__ import annotations

import pytest
from django.utils import timezone

from gating import serving
from gating.models import GatingVersion
from tests.helpers import api_client_for, finished_job, wait_for
from training.models import Job, WorkerHeartbeat
from training.services import jobs_sweep_stale

pytestmark = pytest.mark.worker



def test_it_trains_evaluates_promotes_and_serves_a_gating_model(
        celery_worker_process, gating_artifacts, make_gating_setup, maintainer, owner, client,
        clean_media):
    versions = make_gating_setup(owner, artifacts=gating_artifacts)
    staff = api_client_for(maintainer)
    response = staff.post("/api/v1/gating/", {"params": {"epochs": 15}}, format="json")
    assert response.status_code == 201, response.content
    version_id = response.json()["version"]["id"]

    train_job = wait_for(lambda: finished_job(response.json()["job"]["id"]), timeout=240,
                         what="gating training")
    assert train_job.status == Job.Status.SUCCEEDED, train_job.error
    assert train_job.worker == celery_worker_process.hostname
    version = GatingVersion.objects.get(pk=version_id)
    assert version.weights and version.weights_sha256
    assert version.training_curves["regularized"] and version.training_curves["unregularized"]
    eval_job = wait_for(lambda: finished_job(version.eval_job_id), timeout=240, what="evaluation")
    assert eval_job.status == Job.Status.SUCCEEDED, eval_job.error
    assert eval_job.queue == "cpu" and train_job.queue == "gpu"

    report = staff.get(f"/api/v1/gating/{version_id}/").json()["report"]
    keys = {str(v.pk) for v in versions}
    assert set(report["domains"]) == {"news", "spam", "sentiment"}
    assert set(report["eval_split"].values()) == {"test"}
    assert 0.0 <= report["summary"]["accuracy"] <= 1.0
    assert report["summary"]["accuracy"] > 0.4  # three real experts beat chance (~0.33)
    routing = report["routing"]
    assert set(routing["load"]) == keys
    assert sum(routing["load"].values()) == pytest.approx(1.0)
    assert 0 < routing["utilization"] <= 1.0 and "normalized_entropy" in routing
    assert routing["accuracy"] > 0.5
    assert set(report["credit"]) == keys
    assert set(report["unregularized"]["routing"]["load"]) == keys
    assert report["compute"]["dense_flops_per_input"] >= report["compute"][
        "routed_flops_per_input"] > 0

    response = staff.post(f"/api/v1/gating/{version_id}/promote/")
    assert response.status_code == 201, response.content
    assert Job.objects.filter(kind=Job.Kind.REFRESH_LEADERBOARDS).exists()

    serving.reset()
    response = api_client_for(None).post(
        "/api/v1/predict/",
        {"texts": ["The striker scored twice as the home side won the derby.",
                   "URGENT! You have won a 1000 cash prize, call now to claim."]},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["gating_version"] == version.number
    assert len(body["predictions"]) == 2
    for p in body["predictions"]:
        assert p["domain"] in {"news", "spam", "sentiment"}
        assert 0 < p["confidence"] <= 1
        assert p["experts"][0]["expert"] in keys and p["experts"][0]["weight"] == 1.0
    assert body["predictions"][1]["domain"] == "spam"

    page = client.get(f"/gating/{version_id}/")
    assert page.status_code == 200
    assert page.content.count(b"<svg") >= 5
    response = client.post("/gating/playground/", {"texts": "what a wonderful film"})
    assert response.status_code == 200 and b'id="predictions"' in response.content


def test_it_fails_a_training_job_whose_worker_is_killed(
        celery_worker_process, gating_artifacts, make_gating_setup, maintainer, owner, settings,
        clean_media):
    make_gating_setup(owner, artifacts=gating_artifacts)
    params = {"epochs": 1000, "patience": 1000, "samples_per_domain": 4000}
    response = api_client_for(maintainer).post("/api/v1/gating/", {"params": params},
                                               format="json")
    assert response.status_code == 201, response.content
    job_id, version_id = response.json()["job"]["id"], response.json()["version"]["id"]

    wait_for(lambda: Job.objects.get(pk=job_id).status == Job.Status.RUNNING, timeout=120,
             interval=0.05, what="training to start")
    celery_worker_process.kill()
    assert Job.objects.get(pk=job_id).status == Job.Status.RUNNING  # nobody is left to say

    stale = timezone.now() - timezone.timedelta(seconds=settings.MOECOLLAB_WORKER_STALE_S + 5)
    WorkerHeartbeat.objects.filter(hostname=celery_worker_process.hostname).update(
        last_seen=stale)
    Job.objects.filter(pk=job_id).update(started_at=stale)
    assert jobs_sweep_stale()["failed"] == 1
    job = Job.objects.get(pk=job_id)
    assert job.status == Job.Status.FAILED and "stopped while running" in job.error
    version = GatingVersion.objects.select_related("train_job").get(pk=version_id)
    assert version.display_status == GatingVersion.Status.FAILED
    assert not version.weights
