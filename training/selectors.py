"""Reads for jobs and workers."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from training.models import Job, WorkerHeartbeat


def job_list(*, user, status: str | None = None, kind: str | None = None) -> QuerySet[Job]:
    """The jobs this user may see (Job.objects.visible_to), newest first."""
    qs = Job.objects.visible_to(user).select_related("created_by")
    if status:
        qs = qs.filter(status=status)
    if kind:
        qs = qs.filter(kind=kind)
    return qs


def job_get(*, user, pk: int) -> Job | None:
    return job_list(user=user).filter(pk=pk).first()


def workers_alive() -> list[WorkerHeartbeat]:
    since = timezone.now() - timedelta(seconds=settings.MOECOLLAB_WORKER_STALE_S)
    return list(WorkerHeartbeat.objects.filter(last_seen__gte=since).order_by("hostname"))
