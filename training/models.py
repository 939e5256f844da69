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

    @property
    def progress_percent(self) -> int:
        return round(self.progress_fraction * 100)

    @property
    def progress_words(self) -> str:
        """The progress bar's caption: a stopped bar says why it stopped (static/js/jobs.js
        writes the same while the page polls)."""
        step = f" while {self.progress_message}" if self.progress_message else ""
        if self.status == self.Status.FAILED:
            return f"Failed at {self.progress_percent} %{step}"
        if self.status == self.Status.CANCELLED:
            return f"Cancelled at {self.progress_percent} %{step}"
        if self.status == self.Status.QUEUED:
            return "Waiting for a worker"
        if self.status == self.Status.SUCCEEDED:
            return "Finished"
        return f"{self.progress_message}" if self.progress_message else "Running"

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
            with transaction.atomic():  # a savepoint: a settle that fails leaves the job's end
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
            if cancelled:  # in the same transaction: nobody sees the job ended, its object not
                job.settle(Job.Status.CANCELLED, "cancelled before it started")
        self.refresh_from_db()
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
        # One transaction: whoever sees the job ended also sees its object settled (the
        # version failed, its owner notified), never the job ended and the rest on the way.
        with transaction.atomic():
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

    @property
    def traceback(self) -> str:
        """The traceback fail() stored after the reason ('' when there is none)."""
        return self.error.split("\n\n", 1)[1] if "\n\n" in self.error else ""

    @property
    def advice(self) -> str:
        """What to do about a failed or cancelled job, in words, for whoever may see it."""
        if self.status == self.Status.CANCELLED:
            return ("Nothing more happens for this job. Start the work again from its page if "
                    "you still need it.")
        if self.status != self.Status.FAILED:
            return ""
        reason = self.error_summary
        if reason.startswith("worker ") or reason.startswith("the worker process"):
            return ("The work itself may be fine: the worker running it stopped. Start it "
                    "again; if it keeps happening, a maintainer should check the workers "
                    "(/healthz lists them).")
        if "time limit" in reason:
            return ("Try it with less work (fewer rows, fewer epochs), or ask a maintainer "
                    "for a longer limit.")
        return FAILURE_ADVICE.get(self.kind, "Try again; if it fails the same way, tell a "
                                             "maintainer, who can read the technical details.")

    @property
    def outcome(self) -> dict | None:
        """A finished job's result in words, where its metrics alone would mislead:
        {"text": ..., "link": ...}. A job can succeed without making anything new (its result
        existed already) and a validation can run to the end and find the artifact invalid."""
        m = self.metrics if isinstance(self.metrics, dict) else {}
        if m.get("outcome"):
            return {"text": str(m["outcome"]), "link": str(m.get("existing_version_link") or ""),
                    "link_text": f"Open {m.get('existing_version') or 'the existing version'}"}
        if m.get("valid") is False:
            check = m.get("failed_check") or "a check"
            return {"text": f"The artifact failed the check “{check}”: {m.get('reason', '')}. "
                            "Nothing is wrong with the job; fix the artifact and upload it as "
                            "a new version.", "link": "", "link_text": ""}
        return None

    def metric_rows(self) -> list[tuple[str, str]]:
        """The metrics as (name, value) rows for a table; nested objects as dotted names."""
        rows: list[tuple[str, str]] = []
        hidden = {"outcome", "existing_version", "existing_version_link"}  # said by outcome

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict) and value:
                for key, child in value.items():
                    if not prefix and key in hidden:
                        continue
                    walk(f"{prefix}.{key}" if prefix else str(key), child)
            else:
                rows.append((prefix, format_metric(value)))

        if isinstance(self.metrics, dict) and self.metrics:
            walk("", self.metrics)
        return rows


# What to do after a failure, per kind; the reason says what failed.
FAILURE_ADVICE = {
    Job.Kind.VALIDATE_EXPERT:
        "Fix what the reason names in the artifact and upload it as a new version of the "
        "expert. The command “moecollab inspect FOLDER” runs the same checks on your machine "
        "before you upload.",
    Job.Kind.TRAIN_EXPERT:
        "Fix what the reason names (the dataset or the settings) and start the training again "
        "from the expert's page.",
    Job.Kind.TRAIN_GATING:
        "Change what the reason names (the experts chosen or a setting) and start the training "
        "again from the gating page.",
    Job.Kind.EVALUATE:
        "The gating version stays trained (its router is kept) but has no report, so it cannot "
        "be promoted. Once the reason is dealt with, train again from the gating page.",
}


def format_metric(value) -> str:
    """A metric value for a table cell: floats to 4 significant digits, lists joined."""
    if value is None or value == {} or value == []:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(format_metric(v) for v in value[:20]) + (" …" if len(value) > 20
                                                                 else "")
    return str(value)


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
