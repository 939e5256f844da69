"""Start the platform on one machine: migrate, a maintainer, a Celery worker, the web server."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from moecollab_site.roles import MAINTAINER, user_add_role


class Command(BaseCommand):
    help = "Migrate, create a maintainer, start a worker (queues cpu,gpu) and the web server."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default=os.environ.get("MOECOLLAB_ADDR", "127.0.0.1:8000"))
        parser.add_argument("--no-worker", action="store_true", help="web only")
        parser.add_argument("--no-demo", action="store_true",
                            help="do not build the demo (domains, experts, a production model)")

    def handle(self, *args, addr: str, no_worker: bool, no_demo: bool, **options):
        call_command("migrate", interactive=False, verbosity=0)
        username, password = self._maintainer()
        if not no_demo:
            self._demo(username)
        worker = None if no_worker else self._start_worker()
        self.stdout.write(self.style.SUCCESS(
            f"\nMoECollab is starting at http://{addr}/\n"
            f"  maintainer log-in: username={username} password={password}\n"
            f"  database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"
            f" · broker: {settings.CELERY_BROKER_URL.split('://', 1)[0]}"
            f" · worker: {'pid ' + str(worker.pid) if worker else 'none'}\n"
            + self._links(addr) +
            "  stop with Ctrl-C\n"
        ))
        try:
            call_command("runserver", addr, use_reloader=False, use_threading=True)
        finally:
            if worker is not None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.kill()

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
        log_path = Path(settings.VAR_DIR) / "worker.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "celery", "-A", "moecollab_site", "worker",
               "-Q", "cpu,gpu", "--concurrency", "1", "-l", "INFO", "--beat",
               "--schedule", str(Path(settings.VAR_DIR) / "celerybeat-schedule"),
               "-n", f"local-{os.getpid()}@%h"]
        self.stdout.write(f"worker log: {log_path}")
        return subprocess.Popen(cmd, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                                env=os.environ.copy())
