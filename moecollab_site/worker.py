"""Worker-side plumbing: a heartbeat so the web process can tell whether any worker is alive.

Each start of a worker is its own *incarnation*: an id made in the main process before the pool
forks (the pool processes inherit it through the environment), written in the heartbeat and
recorded by every job the worker claims. A worker restarted under the same name (compose's
`cpu@%h` with `restart: unless-stopped`) is a new incarnation, so the stale sweep can tell that
its predecessor's jobs have nobody running them.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import uuid

from celery import bootsteps
from celery.signals import worker_init

log = logging.getLogger(__name__)
HEARTBEAT_INTERVAL_S = 5.0
INCARNATION_ENV = "MOECOLLAB_WORKER_INCARNATION"
# Set by runplatform: the pid of the process whose death must stop this worker.
PARENT_PID_ENV = "MOECOLLAB_WORKER_PARENT_PID"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@worker_init.connect
def _new_incarnation(**kwargs) -> None:
    os.environ[INCARNATION_ENV] = uuid.uuid4().hex


@worker_init.connect
def _stop_with_parent(**kwargs) -> None:
    """A worker started by runplatform gets SIGTERM when runplatform dies, even by SIGKILL or
    os._exit, where its own clean-up cannot run; without this it would live on under PID 1."""
    parent = os.environ.pop(PARENT_PID_ENV, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        log.warning("cannot ask to be stopped with pid %s: errno %s", parent, ctypes.get_errno())
        return
    if os.getppid() != int(parent):  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


def incarnation() -> str:
    """This worker start's id ("" outside a worker)."""
    return os.environ.get(INCARNATION_ENV, "")


def write_heartbeat(*, hostname: str, queues: str, first: bool = False) -> None:
    from django.db import DatabaseError
    from django.utils import timezone

    from training.models import WorkerHeartbeat

    now = timezone.now()
    defaults = {"queues": queues, "pid": os.getpid(), "last_seen": now,
                "incarnation": incarnation()}
    if first:
        defaults["started_at"] = now
    try:
        WorkerHeartbeat.objects.update_or_create(hostname=hostname, defaults=defaults)
    except DatabaseError as exc:  # the database being away must not kill the worker
        log.warning("heartbeat not written: %s", exc)


def sweep_on_start() -> None:
    """A starting worker sweeps first: with beat inside the worker (the local setup) nothing
    swept while it was down, and a restart is when a predecessor's jobs are orphaned."""
    from django.db import DatabaseError

    from training.services import jobs_sweep_stale

    try:
        result = jobs_sweep_stale()
    except DatabaseError as exc:
        log.warning("start-up sweep skipped: %s", exc)
        return
    if result["failed"] or result["requeued"]:
        log.info("start-up sweep: %s", result)


class HeartbeatStep(bootsteps.StartStopStep):
    """Writes WorkerHeartbeat every few seconds from the worker's timer thread."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        queues = ",".join(sorted(q.name for q in worker.app.amqp.queues.consume_from.values()))
        args = {"hostname": worker.hostname, "queues": queues}
        write_heartbeat(**args, first=True)
        sweep_on_start()
        self.tref = worker.timer.call_repeatedly(
            HEARTBEAT_INTERVAL_S, write_heartbeat, kwargs=args, priority=10
        )

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
