"""A real Celery worker process takes a job from the broker and runs it to the end."""
from __future__ import annotations

import pytest

from tests.helpers import api_client_for, wait_for
from training.models import Job

pytestmark = pytest.mark.worker


def test_it_runs_a_job_through_a_real_worker_process(celery_worker_process, maintainer, client):
    response = api_client_for(maintainer).post("/api/v1/jobs/", {"kind": "self_check"},
                                               format="json")
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]
    assert response.json()["status"] == "queued"

    seen = set()

    def finished():
        job = Job.objects.get(pk=job_id)
        seen.add(job.status)
        return job if job.is_finished else None

    job = wait_for(finished, timeout=180, what=f"job {job_id} to finish")
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.worker == celery_worker_process.hostname
    assert len(job.metrics["fingerprint"]) == 64
    assert job.metrics["device"] == "cpu"
    assert job.celery_task_id
    # /healthz sees the worker through its heartbeat.
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert celery_worker_process.hostname in [w["hostname"] for w in health["worker"]["workers"]]


def test_it_marks_a_job_failed_when_its_worker_is_killed(celery_worker_process, maintainer,
                                                         settings):
    from django.utils import timezone

    from training.models import WorkerHeartbeat
    from training.services import jobs_sweep_stale

    job = Job.objects.create(kind=Job.Kind.SELF_CHECK, status=Job.Status.RUNNING,
                             worker=celery_worker_process.hostname,
                             started_at=timezone.now())
    celery_worker_process.kill()
    # Nothing more is heard from the worker; time passes beyond the staleness window.
    stale = timezone.now() - timezone.timedelta(seconds=settings.MOECOLLAB_WORKER_STALE_S + 5)
    WorkerHeartbeat.objects.filter(hostname=celery_worker_process.hostname).update(last_seen=stale)
    Job.objects.filter(pk=job.pk).update(started_at=stale)
    assert jobs_sweep_stale()["failed"] == 1
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "stopped while running" in job.error
