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
        ended = job.status == Job.Status.QUEUED
        if ended:
            job.status = Job.Status.CANCELLED
            job.finished_at = timezone.now()
            fields += ["status", "finished_at"]
        job.save(update_fields=fields)
        if ended:
            job.settle(Job.Status.CANCELLED, "cancelled before it started")
    return job


def jobs_sweep_stale() -> dict:
    """End running jobs nobody runs any more; re-send queued ones whose message may be lost.

    A running job is orphaned when the worker incarnation that claimed it stopped sending
    heartbeats for MOECOLLAB_WORKER_STALE_S, or was replaced: a worker restarted under the same
    name writes a new incarnation into the heartbeat, so liveness never rests on the name.
    Without this a killed worker's job would say "running" forever. A queued job whose message
    was lost (a broker restarted without persistence) is dispatched again; claim() makes sure
    it still runs only once.
    """
    from datetime import timedelta

    from django.conf import settings

    from training.models import WorkerHeartbeat

    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.MOECOLLAB_WORKER_STALE_S)
    beats = {b.incarnation or b.hostname: b for b in WorkerHeartbeat.objects.all()}
    by_name = {b.hostname: b for b in beats.values()}
    failed = 0
    running = Job.objects.filter(status=Job.Status.RUNNING, started_at__lt=stale_before)
    for job in running:
        # Jobs claimed before incarnations existed are matched by the worker's name.
        beat = beats.get(job.worker_incarnation) if job.worker_incarnation else by_name.get(
            job.worker)
        if beat is not None and beat.last_seen >= stale_before:
            continue
        if beat is not None:
            why = f"last heartbeat {beat.last_seen:%Y-%m-%d %H:%M:%S} UTC"
        elif job.worker in by_name:
            why = "it was restarted since and the new start does not know this job"
        else:
            why = "no heartbeat"
        if job.fail(f"worker {job.worker or '?'} stopped while running this job ({why}); "
                    "marked failed by the stale-job sweep"):
            failed += 1
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
