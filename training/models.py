"""Background jobs and the workers that run them."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from moecollab_site.jsonsafe import FiniteJSONEncoder
from moecollab_site.roles import is_maintainer

log = logging.getLogger(__name__)


class JobQuerySet(models.QuerySet):
    def visible_to(self, user) -> JobQuerySet:
        """Jobs, their metrics and errors: whoever started them and maintainers see them."""
        if is_maintainer(user):
            return self
        if not user.is_authenticated:
            return self.none()
        return self.filter(created_by=user)


class Job(models.Model):
    """One unit of background work, with its state persisted for users to watch."""

    class Kind(models.TextChoices):
        SELF_CHECK = "self_check", "Worker self-check"
        VALIDATE_EXPERT = "validate_expert", "Validate expert"
        TRAIN_EXPERT = "train_expert", "Train expert"
        TRAIN_GATING = "train_gating", "Train gating model"
        EVALUATE = "evaluate", "Evaluate gating model"
        REFRESH_LEADERBOARDS = "refresh_leaderboards", "Refresh leaderboards"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Queue(models.TextChoices):
        CPU = "cpu", "CPU"
        GPU = "gpu", "GPU"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    # kind -> settle(job, status, reason): brings the object the job works on (an expert or
    # gating version) to a final state with the reason when the job fails or is cancelled,
    # whoever ended it: its handler, a killed pool process, a time limit, the stale sweep or a
    # cancel while queued. Registered by the apps' handlers (Job.settles); guarded, so a
    # version its handler already settled is left alone.
    SETTLERS: ClassVar[dict[str, Callable[[Job, str, str], None]]] = {}

    kind = models.CharField(max_length=32, choices=Kind.choices)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    queue = models.CharField(max_length=8, choices=Queue.choices, default=Queue.CPU)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="jobs",
    )
    params = models.JSONField(encoder=FiniteJSONEncoder, default=dict, blank=True)
    progress_current = models.FloatField(default=0)
    progress_total = models.FloatField(default=0)
    progress_message = models.CharField(max_length=300, blank=True)
    log_tail = models.TextField(blank=True)
    metrics = models.JSONField(encoder=FiniteJSONEncoder, default=dict, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    celery_task_id = models.CharField(max_length=64, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    dispatch_count = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    # The worker start (one id per process start) that claimed the job: a worker restarted
    # under the same name is another incarnation, so its predecessor's jobs are not "alive".
    worker_incarnation = models.CharField(max_length=32, blank=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.kind}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def progress_fraction(self) -> float:
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        if self.progress_total <= 0:
            return 0.0
        return max(0.0, min(1.0, self.progress_current / self.progress_total))

    @classmethod
    def settles(cls, *kinds: str) -> Callable:
        """Decorator: register the settle function of some job kinds (see SETTLERS)."""
        def wrap(fn: Callable[[Job, str, str], None]) -> Callable:
            for kind in kinds:
                cls.SETTLERS[kind] = fn
            return fn

        return wrap

    def settle(self, status: str, reason: str) -> None:
        """Bring the object this job works on to a final state (after a failure or cancel)."""
        settle = self.SETTLERS.get(self.kind)
        if settle is None:
            return
        try:
            settle(self, status, reason.split("\n\n", 1)[0][:1000])
        except Exception:  # noqa: BLE001 - the job has ended; a settle failure is logged, not lost
            log.exception("job %s: could not settle its %s object", self.pk, self.kind)

    def claim(self, *, worker: str, incarnation: str = "") -> bool:
        """Move queued -> running exactly once; a redelivered message finds it taken."""
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=self.pk)
            if job.status != Job.Status.QUEUED:
                return False
            if job.cancel_requested:
                job.status = Job.Status.CANCELLED
                job.finished_at = timezone.now()
                job.save(update_fields=["status", "finished_at"])
                cancelled = True
            else:
                job.status = Job.Status.RUNNING
                job.started_at = timezone.now()
                job.worker = worker[:200]
                job.worker_incarnation = incarnation[:32]
                job.save(update_fields=["status", "started_at", "worker", "worker_incarnation"])
                cancelled = False
        self.refresh_from_db()
        if cancelled:
            self.settle(Job.Status.CANCELLED, "cancelled before it started")
        return not cancelled

    def finish(self, *, status: str, metrics: dict | None = None, error: str = "",
               settle: bool = True) -> bool:
        """Record the end state, only if the job is still running (a sweep may have ended it).

        Returns whether this call ended the job. settle=False leaves the object the job works
        on as it is, for a caller that resumes it itself (the demo after a Ctrl-C).
        """
        fields: dict = {"status": status, "finished_at": timezone.now(), "error": error[:10000]}
        if metrics is not None:
            fields["metrics"] = metrics
        if status == Job.Status.SUCCEEDED:
            fields["progress_current"] = models.F("progress_total")
        ended = Job.objects.filter(pk=self.pk, status=Job.Status.RUNNING).update(**fields)
        self.refresh_from_db()
        if ended and settle and status != Job.Status.SUCCEEDED:
            self.settle(status, error or status)
        return bool(ended)

    def fail(self, error: str, *, traceback: str = "", settle: bool = True) -> bool:
        """End a running job as failed: the runner, the task-died signal and the stale sweep.

        `error` is the one-line reason everyone sees; `traceback` follows it after a blank
        line. Returns False when the job had already ended (a cancel or a sweep came first).
        """
        return self.finish(status=Job.Status.FAILED,
                           error=f"{error}\n\n{traceback}" if traceback else error,
                           settle=settle)

    @property
    def error_summary(self) -> str:
        """The human reason of `error` without the traceback fail() stores after it."""
        return self.error.split("\n\n", 1)[0]

    def error_for(self, user, *, maintainer: bool | None = None) -> str:
        """Tracebacks are for maintainers; everyone else who may see the job gets the reason."""
        full = is_maintainer(user) if maintainer is None else maintainer
        return self.error if full else self.error_summary


class WorkerHeartbeat(models.Model):
    """Last sign of life of a Celery worker process, written by the worker every few seconds."""

    hostname = models.CharField(max_length=200, unique=True)
    incarnation = models.CharField(max_length=32, blank=True)  # this start of the worker
    queues = models.CharField(max_length=200, blank=True)
    pid = models.IntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return self.hostname
