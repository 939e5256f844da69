"""Thin Celery tasks: they receive a job id and hand over to the runner.

Job handlers are registered by each app's AppConfig.ready(), so every process that loads
Django (worker, web, commands) knows them; services send these tasks by name.
"""
from __future__ import annotations

from celery import shared_task
from celery.signals import task_failure

from moecollab_site.errors import reason_of
from moecollab_site.worker import incarnation
from training.runner import run_job
from training.services import RUN_JOB_TASK, jobs_sweep_stale


@shared_task(name=RUN_JOB_TASK, bind=True, acks_late=True, ignore_result=True)
def run_job_task(self, job_id: int) -> str:
    return run_job(job_id, worker=self.request.hostname or "worker", incarnation=incarnation())


@shared_task(name="training.sweep_stale_jobs", ignore_result=True, time_limit=120)
def sweep_stale_jobs_task() -> dict:
    return jobs_sweep_stale()


@task_failure.connect(sender=run_job_task)
def _job_task_died(sender=None, args=None, exception=None, **kwargs) -> None:
    """The pool process running a job was killed (OOM, hard time limit): end the job now."""
    from training.models import Job

    job = Job.objects.filter(pk=args[0]).first() if args else None
    if job is not None:
        # In words for the job's starter: the class name is no help to them.
        detail = str(exception).strip() or reason_of(exception)
        job.fail(f"the worker process running this job died: {detail}")
