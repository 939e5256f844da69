"""The Celery app: settings from Django (CELERY_*), tasks found in the apps, queues cpu and gpu."""
from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "moecollab_site.settings.local")

app = Celery("moecollab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("cpu"), Queue("gpu"))
app.autodiscover_tasks()


def _install_worker_heartbeat() -> None:
    from moecollab_site.worker import HeartbeatStep

    app.steps["worker"].add(HeartbeatStep)


_install_worker_heartbeat()
