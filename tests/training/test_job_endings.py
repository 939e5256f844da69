"""Every way a job can end brings the object it works on to a final state with the reason, and
its owner is told: the stale sweep, a killed pool process, a time limit, a cancel while queued."""
from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from experts.models import ExpertVersion, Notification
from gating.models import GatingVersion
from tests.helpers import make_domain, make_expert, make_version
from training import runner
from training.models import Job, WorkerHeartbeat
from training.services import job_cancel, job_create, jobs_sweep_stale
from training.tasks import _job_task_died


def _version_with_job(owner, kind: str, status: str) -> tuple[ExpertVersion, Job]:
    version = make_version(make_expert(owner, make_domain("toy")), status=status)
    job = job_create(kind=kind, user=owner, params={"version_id": version.pk})
    version.training_params = {"validation_job": job.pk}
    version.save(update_fields=["training_params"])
    return version, job


def _running(job: Job, *, incarnation: str, minutes_ago: int = 5) -> Job:
    assert job.claim(worker="w@host", incarnation=incarnation)
    Job.objects.filter(pk=job.pk).update(
        started_at=timezone.now() - timedelta(minutes=minutes_ago))
    return Job.objects.get(pk=job.pk)


def test_the_sweep_ends_a_validation_and_the_version_says_why(owner):
    version, job = _version_with_job(owner, Job.Kind.VALIDATE_EXPERT, "validating")
    _running(job, incarnation="a" * 32)
    WorkerHeartbeat.objects.create(hostname="w@host", incarnation="a" * 32,
                                   last_seen=timezone.now() - timedelta(minutes=5))
    assert jobs_sweep_stale()["failed"] == 1
    version.refresh_from_db()
    assert version.status == ExpertVersion.Status.INVALID
    assert version.error.startswith("validation did not finish: worker w@host stopped")
    assert Notification.objects.filter(user=owner, message__contains="failed").count() == 1


def test_a_live_incarnation_keeps_its_job(owner):
    _, job = _version_with_job(owner, Job.Kind.VALIDATE_EXPERT, "validating")
    _running(job, incarnation="b" * 32)
    WorkerHeartbeat.objects.create(hostname="w@host", incarnation="b" * 32,
                                   last_seen=timezone.now())
    assert jobs_sweep_stale()["failed"] == 0
    assert Job.objects.get(pk=job.pk).status == Job.Status.RUNNING


def test_a_killed_pool_process_ends_a_training_and_its_version(owner):
    version, job = _version_with_job(owner, Job.Kind.TRAIN_EXPERT, "training")
    _running(job, incarnation="c" * 32)
    _job_task_died(args=[job.pk], exception=MemoryError("out of memory"))
    job.refresh_from_db()
    version.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert version.status == ExpertVersion.Status.INVALID
    assert "training did not finish: the worker process running this job died" in version.error
    assert Notification.objects.filter(user=owner).exists()


def test_a_cancel_while_queued_ends_the_version_cancelled(owner):
    version, job = _version_with_job(owner, Job.Kind.VALIDATE_EXPERT, "validating")
    job_cancel(job=job)
    version.refresh_from_db()
    assert Job.objects.get(pk=job.pk).status == Job.Status.CANCELLED
    assert version.status == ExpertVersion.Status.CANCELLED
    assert "validation was cancelled" in version.error
    assert Notification.objects.filter(user=owner, message__contains="cancelled").exists()


@pytest.fixture
def gating_job(maintainer):
    version = GatingVersion.objects.create(number=1, trained_by=maintainer)
    job = job_create(kind=Job.Kind.TRAIN_GATING, user=maintainer,
                     params={"gating_version_id": version.pk})
    return version, job


def test_a_time_limit_fails_a_gating_training_and_says_so(gating_job, maintainer, monkeypatch):
    version, job = gating_job

    def over_time(job, ctx):
        raise SoftTimeLimitExceeded("SoftTimeLimitExceeded()")

    monkeypatch.setitem(runner.HANDLERS, Job.Kind.TRAIN_GATING, over_time)
    assert runner.run_job(job.pk, worker="w@host") == Job.Status.FAILED
    version.refresh_from_db()
    assert version.status == GatingVersion.Status.FAILED
    assert version.error == ("training did not finish: it ran past the 6 h time limit of the "
                             "gpu queue and was stopped")
    assert Notification.objects.filter(user=maintainer, message__contains="gating v1").exists()


def test_a_failed_evaluation_leaves_the_version_trained_with_the_reason(maintainer):
    version = GatingVersion.objects.create(number=2, trained_by=maintainer,
                                           status=GatingVersion.Status.TRAINED)
    job = job_create(kind=Job.Kind.EVALUATE, user=maintainer,
                     params={"gating_version_id": version.pk})
    _running(job, incarnation="d" * 32)
    job.fail("the worker process running this job died: killed")
    version.refresh_from_db()
    assert version.status == GatingVersion.Status.TRAINED
    assert version.error == ("evaluation did not finish: the worker process running this job "
                             "died: killed")


def test_nan_metrics_are_stored_as_null_not_as_invalid_json(maintainer):
    version = GatingVersion.objects.create(number=3, trained_by=maintainer)
    version.training_curves = {"regularized": [{"train_nll": float("nan"), "x": float("inf")}]}
    version.report = {"summary": {"accuracy": float("-inf")}}
    version.save()
    version.refresh_from_db()
    assert version.training_curves == {"regularized": [{"train_nll": None, "x": None}]}
    assert version.report == {"summary": {"accuracy": None}}


@pytest.mark.django_db(transaction=True)
def test_nobody_sees_a_job_ended_before_its_object_is_settled(owner, monkeypatch):
    """The job's end and its settle commit together: a reader (another connection) sees the job
    running until the version is failed and its owner told, never the job ended alone."""
    import threading

    from django.db import connection

    seen = {}

    def settle(job, status, reason):
        def look():  # a thread has its own database connection
            seen["status"] = Job.objects.get(pk=job.pk).status
            connection.close()

        reader = threading.Thread(target=look)
        reader.start()
        reader.join()
        Notification.objects.create(user=owner, message=f"settled: {reason}")

    monkeypatch.setitem(Job.SETTLERS, Job.Kind.VALIDATE_EXPERT, settle)
    _, job = _version_with_job(owner, Job.Kind.VALIDATE_EXPERT, "validating")
    _running(job, incarnation="f" * 32)
    assert job.fail("worker gone")
    assert seen["status"] == Job.Status.RUNNING
    assert Job.objects.get(pk=job.pk).status == Job.Status.FAILED
    assert Notification.objects.filter(user=owner, message="settled: worker gone").exists()


def test_a_settle_that_fails_still_ends_the_job_and_leaves_none_of_its_writes(
        owner, monkeypatch, caplog):
    def settle(job, status, reason):
        Notification.objects.create(user=owner, message="half a settle")
        raise RuntimeError("settle broke")

    monkeypatch.setitem(Job.SETTLERS, Job.Kind.VALIDATE_EXPERT, settle)
    _, job = _version_with_job(owner, Job.Kind.VALIDATE_EXPERT, "validating")
    _running(job, incarnation="e" * 32)
    assert job.fail("worker gone")
    assert Job.objects.get(pk=job.pk).status == Job.Status.FAILED
    assert not Notification.objects.filter(message="half a settle").exists()
    assert "could not settle" in caplog.text
