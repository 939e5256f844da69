"""Worker-side plumbing: a heartbeat so the web process can tell whether any worker is alive."""
from __future__ import annotations

import logging
import os

from celery import bootsteps

log = logging.getLogger(__name__)
HEARTBEAT_INTERVAL_S = 5.0


def write_heartbeat(*, hostname: str, queues: str) -> None:
    from django.db import DatabaseError
    from django.utils import timezone

    from training.models import WorkerHeartbeat

    try:
        WorkerHeartbeat.objects.update_or_create(
            hostname=hostname,
            defaults={"queues": queues, "pid": os.getpid(), "last_seen": timezone.now()},
        )
    except DatabaseError as exc:  # the database being away must not kill the worker
        log.warning("heartbeat not written: %s", exc)


class HeartbeatStep(bootsteps.StartStopStep):
    """Writes WorkerHeartbeat every few seconds from the worker's timer thread."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        queues = ",".join(sorted(q.name for q in worker.app.amqp.queues.consume_from.values()))
        args = {"hostname": worker.hostname, "queues": queues}
        write_heartbeat(**args)
        self.tref = worker.timer.call_repeatedly(
            HEARTBEAT_INTERVAL_S, write_heartbeat, kwargs=args, priority=10
        )

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
