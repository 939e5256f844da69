"""Redis restarted while jobs are queued: no job is lost once it is back, none runs twice.

The broker is a private redis-server started by the test (no persistence, like the shared one),
so killing it loses its messages exactly as a crash would; the shared Redis is never touched.
"""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu import pools as kombu_pools

from moecollab_site.celery import app as celery_app
from tests.faults.servers import PrivateRedis
from tests.helpers import WorkerProcess, api_client_for, wait_for
from training.models import Job
from training.services import job_dispatch, jobs_sweep_stale

pytestmark = pytest.mark.worker


def _reset_producer_pool() -> None:
    """Forget every pooled broker connection, so the next send connects to the current URL.

    kombu keeps connection and producer pools in process-wide registries keyed by connection;
    closing only the app's pool would leave a closed pool registered for the next test to hit.
    """
    kombu_pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path / "redis.log")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def broker(private_redis, settings):
    """This process sends its Celery messages to the private Redis for the test's duration."""
    saved = celery_app.conf.broker_url, celery_app.conf.broker_transport_options
    with pytest.MonkeyPatch.context() as patch:
        # Celery reads the variable before its configuration: both must name the private server.
        patch.setenv("CELERY_BROKER_URL", private_redis.url)
        settings.CELERY_BROKER_URL = private_redis.url
        celery_app.conf.broker_url = private_redis.url
        celery_app.conf.broker_transport_options = {"visibility_timeout": 3600}
        _reset_producer_pool()
        try:
            with celery_app.connection_for_write() as conn:
                assert conn.port == private_redis.port, "messages would go to another broker"
            yield private_redis
        finally:
            celery_app.conf.broker_url, celery_app.conf.broker_transport_options = saved
            _reset_producer_pool()


def _create_job(client) -> tuple[int, float]:
    started = time.monotonic()
    response = client.post("/api/v1/jobs/", {"kind": "self_check"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"], time.monotonic() - started


def test_it_loses_no_job_when_redis_restarts_while_jobs_are_queued(
        broker, worker_env, maintainer, client, tmp_path, settings):
    staff = api_client_for(maintainer)
    # Two jobs queued while no worker runs: their messages wait in Redis ...
    before_crash = [_create_job(staff)[0] for _ in range(2)]
    assert broker.queued_messages("cpu") == 2

    # ... and vanish when Redis dies without persistence.
    broker.kill()
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["broker"]["ok"] is False
    # A job created while Redis is down: the request still succeeds, quickly, and the job
    # waits queued, marked as dispatched so the sweep sends it again.
    during_outage, seconds = _create_job(staff)
    assert seconds < 10
    job = Job.objects.get(pk=during_outage)
    assert job.status == Job.Status.QUEUED and job.dispatched_at is not None
    assert job.dispatch_count == 0

    broker.start()  # same port, empty
    assert broker.queued_messages("cpu") == 0

    worker = WorkerProcess({**worker_env, "CELERY_BROKER_URL": broker.url},
                           tmp_path / "worker.log")
    try:
        worker.start()  # (it purges its queues: start it before sending anything new)
        # Sent on a connection the crash broke: the publish retry reconnects.
        after_restart, _ = _create_job(staff)
        all_jobs = [*before_crash, during_outage, after_restart]
        assert Job.objects.get(pk=after_restart).dispatch_count == 1
        # The sweep re-sends what waited too long (as beat does every minute in production).
        settings.MOECOLLAB_REQUEUE_AFTER_S = 60
        waited = timezone.now() - timedelta(seconds=120)
        lost = [*before_crash, during_outage]
        Job.objects.filter(pk__in=lost).update(dispatched_at=waited)
        assert jobs_sweep_stale() == {"failed": 0, "requeued": 3}

        def all_finished():
            return all(j.is_finished for j in Job.objects.filter(pk__in=all_jobs))

        wait_for(all_finished, timeout=180, what=f"jobs {all_jobs} to finish")
        # A late duplicate of a message (an extra sweep, a redelivery) does not run it again.
        duplicate = Job.objects.get(pk=after_restart)
        assert job_dispatch(job=duplicate) is True
        wait_for(lambda: f"job {after_restart} is succeeded already"
                 in worker.log_path.read_text(errors="replace"), timeout=60,
                 what="the duplicate message to be consumed")
    finally:
        worker.stop()

    for job in Job.objects.filter(pk__in=all_jobs):
        assert job.status == Job.Status.SUCCEEDED, (job.pk, job.error)
        assert job.worker == worker.hostname
        assert job.log_tail.count("started on") == 1, job.log_tail  # ran exactly once
    assert Job.objects.get(pk=after_restart).finished_at == duplicate.finished_at
