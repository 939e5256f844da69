"""Start the platform on one machine: migrate, a maintainer, a Celery worker, the web server.

This is what `make run` runs for a user, so it behaves like a program, not a dev tool: the URL
is printed only once the server listens and the worker has reported in (the home page would
otherwise say there is no worker), and Ctrl-C or SIGTERM stops the worker and everything it
started, so nothing is left running under PID 1.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.management.commands.runserver import Command as RunserverCommand
from django.utils import timezone

from moecollab_site.roles import MAINTAINER, user_add_role
from moecollab_site.worker import PARENT_PID_ENV

# A first start on two busy cores imports Django, Celery and the tasks in about 10 s.
WORKER_REPORT_TIMEOUT_S = 180
# Celery's warm shutdown lets a running task finish; past this the worker group is killed
# (the stale sweep of the next start ends that job).
WORKER_STOP_TIMEOUT_S = 20


def _stop_on_sigterm() -> None:
    """SIGTERM takes the same way out as Ctrl-C, so the `finally` that stops the worker runs."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


class _Server(RunserverCommand):
    """Django's threaded server, printing the platform's banner once the socket is bound."""

    banner = ""

    def on_bind(self, server_port):
        self.stdout.write(self.banner)
        self.stdout.flush()


class Command(BaseCommand):
    help = "Migrate, create a maintainer, start a worker (queues cpu,gpu) and the web server."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default=os.environ.get("MOECOLLAB_ADDR", "127.0.0.1:8000"))
        parser.add_argument("--no-worker", action="store_true", help="web only")
        parser.add_argument("--no-demo", action="store_true",
                            help="do not build the demo (domains, experts, a production model)")

    def handle(self, *args, addr: str, no_worker: bool, no_demo: bool, **options):
        _stop_on_sigterm()
        worker: subprocess.Popen | None = None
        try:
            self._check_port_free(addr)
            call_command("migrate", interactive=False, verbosity=0)
            username, password = self._maintainer()
            if not no_demo:
                self._demo(username)
            if not no_worker:
                worker = self._start_worker()
            server = _Server(stdout=self.stdout, stderr=self.stderr)
            server.banner = self._banner(addr, username, password, worker)
            call_command(server, addr, use_reloader=False, use_threading=True)
        except KeyboardInterrupt:
            pass
        except SystemExit as exc:  # runserver's own way out of Ctrl-C
            if exc.code not in (0, None):
                raise
        finally:
            if worker is not None:
                self._stop_worker(worker)
        self.stdout.write("MoECollab stopped.")

    def _check_port_free(self, addr: str) -> None:
        """Refuse before anything starts: runserver leaves with os._exit on a taken port."""
        host, _, port = addr.rpartition(":")
        host = (host or "127.0.0.1").strip("[]")
        if not port.isdigit():
            raise CommandError(f"--addr must look like 127.0.0.1:8000, got {addr!r}")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, int(port)))
            except OSError as exc:
                raise CommandError(
                    f"cannot listen on {addr}: {exc.strerror}. Is another `make run` still "
                    "running? Stop it, or choose another port with "
                    "MOECOLLAB_ADDR=127.0.0.1:8001 make run") from None

    def _banner(self, addr: str, username: str, password: str,
                worker: subprocess.Popen | None) -> str:
        return self.style.SUCCESS(
            f"\nMoECollab is running at http://{addr}/\n"
            f"  maintainer log-in: username={username} password={password}\n"
            f"  database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"
            f" · broker: {settings.CELERY_BROKER_URL.split('://', 1)[0]}"
            f" · worker: {'pid ' + str(worker.pid) if worker else 'none'}\n"
            + self._links(addr) +
            "  stop with Ctrl-C\n"
        )

    def _demo(self, username: str) -> None:
        """Build the demo before the worker starts, so the two do not race for its jobs."""
        try:
            # Its defaults are this command's: MOECOLLAB_DATA_DIR, 1500 train rows per domain.
            call_command("prepare_demo", maintainer=username,
                         stdout=self.stdout._out)  # raw stream: bars redraw
        except CommandError as exc:
            # The platform is still worth starting; the message says what to fix.
            self.stdout.write(self.style.WARNING(f"demo not built: {exc}"))

    def _links(self, addr: str) -> str:
        from gating.selectors import production_version

        version = production_version()
        if version is None:
            return (f"  gating models: http://{addr}/gating/ (none in production yet)\n")
        return (f"  production model dashboard: http://{addr}/gating/{version.pk}/ "
                f"(gating v{version.number})\n"
                f"  predict playground: http://{addr}/gating/playground/\n")

    def _maintainer(self) -> tuple[str, str]:
        """The local maintainer; its password is kept in var/ so every start can print it."""
        username = os.environ.get("MOECOLLAB_MAINTAINER", "maintainer")
        secret_file = Path(settings.VAR_DIR) / "maintainer-password.txt"
        user = User.objects.filter(username=username).first()
        if user is not None and secret_file.exists():
            password = secret_file.read_text().strip()
            if user.check_password(password):
                user_add_role(user=user, role=MAINTAINER)
                return username, password
        password = secrets.token_urlsafe(12)
        call_command("create_maintainer", username=username, password=password,
                     superuser=True, stdout=open(os.devnull, "w"))
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(password + "\n")
        secret_file.chmod(0o600)
        return username, password

    def _start_worker(self) -> subprocess.Popen:
        """The worker in a session of its own (its pool processes with it), waited for until
        its first heartbeat is in."""
        log_path = Path(settings.VAR_DIR) / "worker.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        hostname = f"local-{os.getpid()}@{socket.gethostname()}"
        cmd = [sys.executable, "-m", "celery", "-A", "moecollab_site", "worker",
               "-Q", "cpu,gpu", "--concurrency", "1", "-l", "INFO", "--beat",
               "--schedule", str(Path(settings.VAR_DIR) / "celerybeat-schedule"),
               "-n", hostname]
        self.stdout.write(f"starting the worker (log: {log_path}) ...")
        self.stdout.flush()
        since = timezone.now()
        # Its own session: Ctrl-C reaches only this process, which stops the worker's whole
        # group in order; the parent pid makes the worker exit should this process be killed.
        worker = subprocess.Popen(cmd, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                                  env={**os.environ, PARENT_PID_ENV: str(os.getpid())},
                                  start_new_session=True)
        self._wait_for_heartbeat(worker, hostname=hostname, since=since, log_path=log_path)
        return worker

    def _wait_for_heartbeat(self, worker: subprocess.Popen, *, hostname: str, since,
                            log_path: Path) -> None:
        from training.models import WorkerHeartbeat

        deadline = time.monotonic() + WORKER_REPORT_TIMEOUT_S
        while time.monotonic() < deadline:
            if WorkerHeartbeat.objects.filter(hostname=hostname, last_seen__gte=since).exists():
                self.stdout.write(f"worker pid {worker.pid} reported in")
                return
            if worker.poll() is not None:
                self.stdout.write(self.style.ERROR(
                    f"the worker exited with status {worker.returncode} before reporting in; "
                    f"jobs will wait in the queue. Its log says why: {log_path}"))
                return
            time.sleep(0.5)
        self.stdout.write(self.style.WARNING(
            f"the worker has not reported in after {WORKER_REPORT_TIMEOUT_S} s; starting the "
            f"web server anyway. See {log_path}"))

    def _stop_worker(self, worker: subprocess.Popen) -> None:
        if worker.poll() is None:
            self.stdout.write(f"stopping the worker (pid {worker.pid}; a running job gets "
                              f"{WORKER_STOP_TIMEOUT_S} s to finish) ...")
            self.stdout.flush()
        _signal_group(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=WORKER_STOP_TIMEOUT_S)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            pass  # a second Ctrl-C: do not wait for the job
        # The pool processes too, even when the worker itself has already gone.
        _signal_group(worker.pid, signal.SIGKILL)
        try:
            worker.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.stderr.write(f"worker pid {worker.pid} did not stop")


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # nothing left in the group
