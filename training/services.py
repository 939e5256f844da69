"""Writes for jobs: create (dispatch after commit) and cancel."""
from __future__ import annotations

import logging

from celery import signature
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

from moecollab_site.errors import DomainError
from training.models import Job

# Explicit limits per queue (seconds): soft raises inside the task, hard kills it.
TIME_LIMITS = {Job.Queue.CPU: (3600, 3660), Job.Queue.GPU: (6 * 3600, 6 * 3600 + 60)}
QUEUE_OF_KIND = {
    Job.Kind.TRAIN_EXPERT: Job.Queue.GPU,
    Job.Kind.TRAIN_GATING: Job.Queue.GPU,
}
# A few quick tries, then give up: the request that created the job must not hang on the broker.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
# Sent by name: the task module (training.tasks) is the layer above and imports this one.
RUN_JOB_TASK = "training.run_job"

log = logging.getLogger(__name__)


def job_dispatch(*, job: Job) -> bool:
    """Send the job's message; False when the broker is unreachable.

    The job stays queued either way and dispatched_at is set, so the stale-job sweep sends it
    again after MOECOLLAB_REQUEUE_AFTER_S: a broker outage delays jobs, it never loses them.
    """
    soft, hard = TIME_LIMITS[Job.Queue(job.queue)]
    try:
        # ignore_result as the task declares it: the same message whether the task module is
        # loaded in this process (a worker) or not (the web process).
        result = signature(RUN_JOB_TASK).apply_async(
            args=[job.pk], queue=job.queue, soft_time_limit=soft, time_limit=hard,
            retry=True, retry_policy=PUBLISH_RETRY, ignore_result=True,
        )
    except BrokerUnreachable as exc:
        log.error("job %s not sent, the broker is unreachable (%s); the stale-job sweep will "
                  "send it again", job.pk, exc)
        Job.objects.filter(pk=job.pk).update(dispatched_at=timezone.now())
        return False
    Job.objects.filter(pk=job.pk).update(celery_task_id=result.id or "",
                                         dispatched_at=timezone.now(),
                                         dispatch_count=F("dispatch_count") + 1)
    return True


def job_create(*, kind: str, user=None, params: dict | None = None) -> Job:
    if kind not in Job.Kind.values:
        raise DomainError(f"unknown job kind {kind!r}; known: {', '.join(Job.Kind.values)}")
    job = Job.objects.create(
        kind=kind,
        queue=QUEUE_OF_KIND.get(kind, Job.Queue.CPU),
        created_by=user if user is not None and user.is_authenticated else None,
        params=params or {},
    )
    transaction.on_commit(lambda: job_dispatch(job=job))
    return job


def job_cancel(*, job: Job) -> Job:
    """Ask a job to stop: a queued job ends at once, a running one at its next stop check."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.is_finished:
            raise DomainError(f"job {job.pk} has already {job.status}", code="job_finished",
                              status_code=409)
        job.cancel_requested = True
        fields = ["cancel_requested"]
        if job.status == Job.Status.QUEUED:
            job.status = Job.Status.CANCELLED
            job.finished_at = timezone.now()
            fields += ["status", "finished_at"]
        job.save(update_fields=fields)
    return job


def jobs_sweep_stale() -> dict:
    """End running jobs whose worker stopped sending heartbeats; re-send queued ones.

    A worker killed mid-job never writes the outcome, so without this the job would say
    "running" forever. A queued job whose message was lost (a broker restarted without
    persistence) is dispatched again; claim() makes sure it still runs only once.
    """
    from datetime import timedelta

    from django.conf import settings

    from training.models import WorkerHeartbeat

    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.MOECOLLAB_WORKER_STALE_S)
    heartbeats = WorkerHeartbeat.objects.filter(last_seen__gte=stale_before)
    alive = set(heartbeats.values_list("hostname", flat=True))
    failed = 0
    running = Job.objects.filter(status=Job.Status.RUNNING, started_at__lt=stale_before)
    for job in running.exclude(worker__in=alive):
        last = WorkerHeartbeat.objects.filter(hostname=job.worker).values_list("last_seen")
        seen = f"last heartbeat {last[0][0]:%Y-%m-%d %H:%M:%S} UTC" if last else "no heartbeat"
        failed += job.fail(f"worker {job.worker or '?'} stopped while running this job "
                           f"({seen}); marked failed by the stale-job sweep")
    requeue_before = now - timedelta(seconds=settings.MOECOLLAB_REQUEUE_AFTER_S)
    requeued = 0
    # Sent long ago but never claimed, or never sent at all (the web process died between
    # commit and dispatch).
    waiting = Job.objects.filter(
        Q(dispatched_at__lt=requeue_before)
        | Q(dispatched_at__isnull=True, created_at__lt=requeue_before),
        status=Job.Status.QUEUED, cancel_requested=False,
    )
    for job in waiting:
        job_dispatch(job=job)
        requeued += 1
    return {"failed": failed, "requeued": requeued}
