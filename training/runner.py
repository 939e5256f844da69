"""Runs one Job inside a worker: claim it once, call its handler, record the outcome."""
from __future__ import annotations

import logging
import time
import traceback
from collections import deque
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError
from django.utils import timezone

from moecollab_site.errors import reason_of
from training.models import Job

log = logging.getLogger(__name__)

Handler = Callable[[Job, "JobContext"], dict]
HANDLERS: dict[str, Handler] = {}
PROGRESS_EVERY_S = 1.0  # at most about one progress write per second
STOP_CHECK_EVERY_S = 1.0
LOG_TAIL_LINES = 200


class JobCancelled(Exception):
    """Raised inside a handler when the user asked the job to stop."""


class JobContext:
    """What a handler gets: throttled progress and log writes, and the stop flag."""

    def __init__(self, job: Job):
        self.job = job
        self._tail: deque[str] = deque(job.log_tail.splitlines(), maxlen=LOG_TAIL_LINES)
        self._last_write = 0.0
        self._last_stop_check = 0.0
        self._stop = False
        self._started = time.monotonic()

    def log(self, message: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        self._tail.append(f"{stamp} {message}")
        log.info("job %s: %s", self.job.pk, message)

    def progress(self, current: float, total: float, message: str = "", *, force=False) -> None:
        now = time.monotonic()
        if message and message != self.job.progress_message:
            self.log(message)
        self.job.progress_current, self.job.progress_total = float(current), float(total)
        self.job.progress_message = message[:300]
        if force or now - self._last_write >= PROGRESS_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self._last_write = time.monotonic()
        Job.objects.filter(pk=self.job.pk).update(
            progress_current=self.job.progress_current,
            progress_total=self.job.progress_total,
            progress_message=self.job.progress_message,
            log_tail="\n".join(self._tail),
        )

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._last_stop_check >= STOP_CHECK_EVERY_S:
            self._last_stop_check = now
            self._stop = Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists()
        return self._stop

    def check_stop(self) -> None:
        if self.should_stop():
            raise JobCancelled("cancelled at the user's request")


def failure_reason(job: Job, exc: BaseException) -> str:
    """Why `job` stopped on `exc`, in words for its starter (handlers record it on their
    objects too): a cancel and a time limit say so, the rest as moecollab_site.errors.reason_of."""
    if isinstance(exc, JobCancelled):
        return str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        from training.services import TIME_LIMITS

        soft, _ = TIME_LIMITS[Job.Queue(job.queue)]
        return (f"it ran past the {soft / 3600:g} h time limit of the {job.queue} queue and "
                "was stopped")
    return reason_of(exc)


def register(kind: str) -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return wrap


def run_job(job_id: int, *, worker: str, incarnation: str = "") -> str:
    """Run the job if it is still queued; returns the final status (or why nothing ran)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        log.warning("job %s does not exist; message dropped", job_id)
        return "missing"
    if not job.claim(worker=worker, incarnation=incarnation):
        log.info("job %s is %s already; redelivered message ignored", job_id, job.status)
        return "skipped"
    handler = HANDLERS.get(job.kind)
    ctx = JobContext(job)
    if handler is None:
        job.fail(f"no handler for job kind {job.kind!r}")
        return job.status
    ctx.log(f"started on {worker}")
    try:
        metrics = handler(job, ctx)
    except JobCancelled as exc:
        ctx.log(str(exc))
        ctx.flush()
        job.finish(status=Job.Status.CANCELLED, error=str(exc))
    except DatabaseError:
        raise  # the row cannot be written; the sweep will end it
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job, with its trace
        log.exception("job %s failed", job_id)
        # The reason is for whoever started the job: in words, no class name; the traceback
        # after it is for maintainers.
        reason = failure_reason(job, exc)
        ctx.log(f"failed: {reason}")
        ctx.flush()
        job.fail(reason, traceback=traceback.format_exc())
    else:
        ctx.log("finished")
        ctx.flush()
        job.finish(status=Job.Status.SUCCEEDED, metrics=metrics or {})
    return job.status
