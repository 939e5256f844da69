"""Background jobs and the workers that run them."""
from __future__ import annotations

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone


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

    kind = models.CharField(max_length=32, choices=Kind.choices)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    queue = models.CharField(max_length=8, choices=Queue.choices, default=Queue.CPU)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="jobs",
    )
    params = models.JSONField(default=dict, blank=True)
    progress_current = models.FloatField(default=0)
    progress_total = models.FloatField(default=0)
    progress_message = models.CharField(max_length=300, blank=True)
    log_tail = models.TextField(blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    celery_task_id = models.CharField(max_length=64, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    dispatch_count = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

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

    def claim(self, *, worker: str) -> bool:
        """Move queued -> running exactly once; a redelivered message finds it taken."""
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=self.pk)
            if job.status != Job.Status.QUEUED:
                return False
            if job.cancel_requested:
                job.status = Job.Status.CANCELLED
                job.finished_at = timezone.now()
                job.save(update_fields=["status", "finished_at"])
                return False
            job.status = Job.Status.RUNNING
            job.started_at = timezone.now()
            job.worker = worker[:200]
            job.save(update_fields=["status", "started_at", "worker"])
        self.refresh_from_db()
        return True

    def finish(self, *, status: str, metrics: dict | None = None, error: str = "") -> bool:
        """Record the end state, only if the job is still running (a sweep may have ended it).

        Returns whether this call ended the job.
        """
        fields: dict = {"status": status, "finished_at": timezone.now(), "error": error[:10000]}
        if metrics is not None:
            fields["metrics"] = metrics
        if status == Job.Status.SUCCEEDED:
            fields["progress_current"] = models.F("progress_total")
        ended = Job.objects.filter(pk=self.pk, status=Job.Status.RUNNING).update(**fields)
        self.refresh_from_db()
        return bool(ended)

    def fail(self, error: str, *, traceback: str = "") -> bool:
        """End a running job as failed: the runner, the task-died signal and the stale sweep.

        `error` is the one-line reason everyone sees; `traceback` follows it after a blank
        line. Returns False when the job had already ended (a cancel or a sweep came first).
        """
        return self.finish(status=Job.Status.FAILED,
                           error=f"{error}\n\n{traceback}" if traceback else error)


class WorkerHeartbeat(models.Model):
    """Last sign of life of a Celery worker process, written by the worker every few seconds."""

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.CharField(max_length=200, blank=True)
    pid = models.IntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return self.hostname
