"""Thin Celery tasks: they receive a job id and hand over to the runner."""
from __future__ import annotations

from celery import shared_task
from celery.signals import task_failure
from django.utils.module_loading import autodiscover_modules

from training.runner import run_job

# Every app registers its job handlers in <app>/handlers.py.
autodiscover_modules("handlers")


@shared_task(name="training.run_job", bind=True, acks_late=True, ignore_result=True)
def run_job_task(self, job_id: int) -> str:
    return run_job(job_id, worker=self.request.hostname or "worker")


@shared_task(name="training.sweep_stale_jobs", ignore_result=True, time_limit=120)
def sweep_stale_jobs_task() -> dict:
    from training.services import jobs_sweep_stale

    return jobs_sweep_stale()


@task_failure.connect(sender=run_job_task)
def _job_task_died(sender=None, args=None, exception=None, **kwargs) -> None:
    """The pool process running a job was killed (OOM, hard time limit): end the job now."""
    from django.utils import timezone

    from training.models import Job

    if not args:
        return
    Job.objects.filter(pk=args[0], status=Job.Status.RUNNING).update(
        status=Job.Status.FAILED, finished_at=timezone.now(),
        error=f"the worker process running this job died: {type(exception).__name__}: "
              f"{exception}",
    )
