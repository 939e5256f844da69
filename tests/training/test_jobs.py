"""Jobs: claimed once, progress throttled, failures and cancels recorded, stale ones swept."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.helpers import api_client_for
from training import runner, services
from training.models import Job, WorkerHeartbeat


@pytest.fixture
def handlers(monkeypatch):
    """A private handler table so tests can register kinds of their own."""
    table: dict = {}
    monkeypatch.setattr(runner, "HANDLERS", table)
    return table


def make_job(**fields) -> Job:
    return Job.objects.create(kind=Job.Kind.SELF_CHECK, **fields)


def test_it_runs_a_queued_job_once_and_ignores_a_redelivery(db, handlers):
    calls = []
    handlers[Job.Kind.SELF_CHECK] = lambda job, ctx: calls.append(job.pk) or {"answer": 42}
    job = make_job()
    assert runner.run_job(job.pk, worker="w1") == Job.Status.SUCCEEDED
    assert runner.run_job(job.pk, worker="w2") == "skipped"
    job.refresh_from_db()
    assert calls == [job.pk]
    assert job.metrics == {"answer": 42}
    assert job.worker == "w1"
    assert job.started_at and job.finished_at
    assert job.progress_fraction == 1.0


def test_it_records_a_failure_with_its_reason(db, handlers):
    def boom(job, ctx):
        ctx.progress(1, 4, "step one")
        raise ValueError("the data folder has no domain.json")

    handlers[Job.Kind.SELF_CHECK] = boom
    job = make_job()
    assert runner.run_job(job.pk, worker="w1") == Job.Status.FAILED
    job.refresh_from_db()
    assert job.error_summary == "the data folder has no domain.json"  # no class name
    assert "step one" in job.log_tail
    assert job.progress_current == 1 and job.progress_total == 4


def test_it_stops_a_running_job_when_cancel_is_requested(db, handlers, monkeypatch):
    monkeypatch.setattr(runner, "STOP_CHECK_EVERY_S", 0.0)
    steps = []

    def long_job(job, ctx):
        for step in range(1000):
            if step == 3:
                services.job_cancel(job=job)  # as if a user clicked Cancel meanwhile
            ctx.check_stop()
            steps.append(step)
        return {}

    handlers[Job.Kind.SELF_CHECK] = long_job
    job = make_job()
    assert runner.run_job(job.pk, worker="w1") == Job.Status.CANCELLED
    assert steps == [0, 1, 2]


def test_it_fails_a_job_of_unknown_kind_cleanly(db, handlers):
    job = make_job()
    assert runner.run_job(job.pk, worker="w1") == Job.Status.FAILED
    job.refresh_from_db()
    assert "no handler" in job.error


def test_it_throttles_progress_writes(db, handlers, monkeypatch):
    writes = []
    original = runner.JobContext.flush

    def counting_flush(self):
        writes.append(self.job.progress_current)
        original(self)

    monkeypatch.setattr(runner.JobContext, "flush", counting_flush)

    def chatty(job, ctx):
        for i in range(500):
            ctx.progress(i, 500)
        return {}

    handlers[Job.Kind.SELF_CHECK] = chatty
    runner.run_job(make_job().pk, worker="w1")
    # 500 progress calls within well under a second: the first write, then the final flush.
    assert len(writes) < 10


def test_it_cancels_a_queued_job_at_once_and_refuses_a_finished_one(db):
    job = make_job()
    services.job_cancel(job=job)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    with pytest.raises(services.DomainError, match="already cancelled"):
        services.job_cancel(job=job)


def test_it_sweeps_a_running_job_whose_worker_went_silent(db, settings):
    long_ago = timezone.now() - timedelta(seconds=settings.MOECOLLAB_WORKER_STALE_S * 3)
    WorkerHeartbeat.objects.create(hostname="dead@host", last_seen=long_ago)
    WorkerHeartbeat.objects.create(hostname="alive@host", last_seen=timezone.now())
    orphan = make_job(status=Job.Status.RUNNING, worker="dead@host", started_at=long_ago)
    healthy = make_job(status=Job.Status.RUNNING, worker="alive@host", started_at=long_ago)
    assert services.jobs_sweep_stale() == {"failed": 1, "requeued": 0}
    orphan.refresh_from_db()
    healthy.refresh_from_db()
    assert orphan.status == Job.Status.FAILED
    assert "dead@host stopped" in orphan.error
    assert healthy.status == Job.Status.RUNNING


@pytest.mark.parametrize(
    ("who", "expected"), [("anonymous", 401), ("owner", 403), ("maintainer", 201)]
)
def test_it_lets_only_maintainers_start_jobs_through_the_api(
    db, who, expected, owner, maintainer, monkeypatch
):
    dispatched = []
    monkeypatch.setattr(services, "job_dispatch", lambda *, job: dispatched.append(job.pk))
    user = {"anonymous": None, "owner": owner, "maintainer": maintainer}[who]
    response = api_client_for(user).post("/api/v1/jobs/", {"kind": "self_check"}, format="json")
    assert response.status_code == expected, response.content
    assert Job.objects.count() == (1 if expected == 201 else 0)
    if expected != 201:
        assert "error" in response.json()


def test_it_explains_an_unknown_job_kind(db, maintainer):
    response = api_client_for(maintainer).post("/api/v1/jobs/", {"kind": "bake"}, format="json")
    assert response.status_code == 400
    assert "kind" in response.json()["error"]["message"]


def test_it_lists_and_shows_jobs_to_who_started_them(db, client, owner):
    """Anonymous visitors see none (tests/security/test_private_data.py: every side)."""
    job = make_job(created_by=owner)
    assert client.get("/api/v1/jobs/").json()["results"] == []
    assert client.get(f"/jobs/{job.pk}/").status_code == 404
    client.force_login(owner)
    assert client.get("/api/v1/jobs/").json()["results"][0]["id"] == job.pk
    assert client.get(f"/api/v1/jobs/{job.pk}/").json()["status"] == "queued"
    page = client.get(f"/jobs/{job.pk}/")
    assert page.status_code == 200 and b"job-progress" in page.content


def test_it_resends_a_queued_job_whose_message_may_be_lost(db, settings, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "job_dispatch", lambda *, job: sent.append(job.pk))
    old = timezone.now() - timedelta(seconds=settings.MOECOLLAB_REQUEUE_AFTER_S + 5)
    lost = make_job(dispatched_at=old)
    never_sent = make_job(created_at=old)  # the web process died before dispatching it
    make_job(dispatched_at=timezone.now())  # just sent: left alone
    make_job()  # just created, its dispatch is on the way: left alone
    make_job(dispatched_at=old, cancel_requested=True, status=Job.Status.CANCELLED)
    assert services.jobs_sweep_stale() == {"failed": 0, "requeued": 2}
    assert sorted(sent) == sorted([lost.pk, never_sent.pk])


def test_it_fails_the_job_when_the_pool_process_running_it_dies(db):
    from billiard.exceptions import WorkerLostError

    from training.tasks import _job_task_died, run_job_task

    job = make_job(status=Job.Status.RUNNING, worker="w1", started_at=timezone.now())
    _job_task_died(sender=run_job_task, args=[job.pk],
                   exception=WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL)"))
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "signal 9" in job.error


def test_it_stores_only_known_typed_job_parameters(db, maintainer, monkeypatch):
    monkeypatch.setattr(services, "job_dispatch", lambda *, job: None)
    client = api_client_for(maintainer)
    weird = client.post("/api/v1/jobs/",
                        {"kind": "self_check", "params": {"x\u0000": [None], "device": "cpu"}},
                        format="json")
    assert weird.status_code == 400  # an unknown parameter is refused, not dropped
    assert list(weird.json()["error"]["fields"]["params"]) == ["x\u0000"]
    assert not Job.objects.exists()
    known = client.post("/api/v1/jobs/", {"kind": "self_check", "params": {"device": "cpu"}},
                        format="json")
    assert known.status_code == 201
    assert Job.objects.get().params == {"device": "cpu"}
    bad = client.post("/api/v1/jobs/", {"kind": "self_check", "params": {"device": "tpu"}},
                      format="json")
    assert bad.status_code == 400 and "device" in bad.json()["error"]["message"]
    assert Job.objects.count() == 1


def test_it_refuses_a_nul_character_in_the_url(db, client):
    api = client.get("/api/v1/experts/?q=a%00b")
    assert api.status_code == 400 and "NUL" in api.json()["error"]["message"]
    assert client.get("/experts/?q=%00").status_code == 400
    assert client.get("/api/v1/experts/?q=ab").status_code == 200
