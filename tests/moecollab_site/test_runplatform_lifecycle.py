"""`manage.py runplatform` (what `make run` starts) as a user meets it: the URL is printed once
the worker has reported in, the site shows its own pages with DEBUG off, and stopping it by
SIGTERM, Ctrl-C (SIGINT) or even SIGKILL leaves no worker process behind."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.worker

# Caps on waiting, not timings under test: a first start on two busy cores takes ~30 s.
START_CAP_S = 600
STOP_CAP_S = 90
URL_LINE = re.compile(r"MoECollab is running at (http://\S+/)")
WORKER_LINE = re.compile(r"worker: pid (\d+)")


def _as_from_a_terminal() -> None:
    """Ctrl-C at its default, as in a terminal: a shell without job control (`pytest ... &`
    in a script) starts its background children with SIGINT ignored, and Python then installs
    no KeyboardInterrupt handler, so runplatform would never see the signal under test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Platform:
    """One runplatform process on a free port and a data folder of its own."""

    def __init__(self, var_dir: Path) -> None:
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DEBUG"}
               and not k.startswith("MOECOLLAB_")}
        env.update({"DJANGO_SETTINGS_MODULE": "moecollab_site.settings.local",
                    "MOECOLLAB_VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1"})
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runplatform", "--no-demo",
             "--addr", f"127.0.0.1:{self.port}"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=_as_from_a_terminal)
        self.lines: list[str] = []
        self.worker_pid: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_url(self) -> tuple[str, int]:
        deadline = time.monotonic() + START_CAP_S
        while time.monotonic() < deadline:
            found = URL_LINE.search(self.output)
            if found:
                worker = WORKER_LINE.search(self.output)
                assert worker, self.output
                self.worker_pid = int(worker.group(1))
                return found.group(1), self.worker_pid
            assert self.proc.poll() is None, f"runplatform exited early:\n{self.output}"
            time.sleep(0.2)
        raise AssertionError(f"no URL printed within {START_CAP_S} s:\n{self.output}")

    def stop(self) -> None:
        """After the test: nothing of this platform may outlive it, whatever the test saw."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.worker_pid is not None:
            for pid in _left_behind(self.proc.pid, self.worker_pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _stat(pid: str) -> tuple[int, int, int] | None:
    """(parent pid, process group, session) of a live process, None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the name may hold spaces and brackets
    if fields[0] == "Z":
        return None  # a zombie has stopped running
    return int(fields[1]), int(fields[2]), int(fields[3])


def _left_behind(platform_pid: int, worker_pid: int) -> list[int]:
    """Processes of the worker's group or session, or children of runplatform, still alive."""
    left = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(entry)
        if stat is None:
            continue
        ppid, pgrp, sid = stat
        if int(entry) in (platform_pid, worker_pid) or ppid == platform_pid \
                or worker_pid in (pgrp, sid):
            left.append(int(entry))
    return left


def _wait_until_gone(platform_pid: int, worker_pid: int) -> list[int]:
    deadline = time.monotonic() + STOP_CAP_S
    while time.monotonic() < deadline:
        left = _left_behind(platform_pid, worker_pid)
        if not left:
            return []
        time.sleep(0.5)
    return _left_behind(platform_pid, worker_pid)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.headers.get("Content-Type", ""), \
                response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


@pytest.fixture
def platform(tmp_path):
    running = Platform(tmp_path / "var")
    yield running
    running.stop()


def _check_pages(url: str) -> None:
    status, _, home = _get(url)
    assert status == 200
    assert "No worker has reported" not in home
    assert "local-" in home  # the worker runplatform started is listed

    status, _, missing = _get(url + "no-such-page/")
    assert status == 404
    assert "Page not found" in missing and "MoECollab" in missing
    assert "Django" not in missing and "URLconf" not in missing  # not the debug page

    status, kind, body = _get(url + "api/v1/no-such-endpoint/")
    assert status == 404 and kind.startswith("application/json")
    assert json.loads(body)["error"]["code"] == "not_found"

    status, kind, css = _get(url + "static/css/site.css")  # WhiteNoise, DEBUG off
    assert status == 200 and kind.startswith("text/css") and ".topbar" in css


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT],
                         ids=["sigterm", "sigint"])
def test_it_serves_with_a_live_worker_and_leaves_nothing_behind_when_stopped(platform, signum):
    url, worker_pid = platform.wait_for_url()
    assert url == f"http://127.0.0.1:{platform.port}/"
    assert _stat(str(worker_pid)) is not None, "the printed worker is not running"
    _check_pages(url)

    platform.proc.send_signal(signum)
    platform.proc.wait(timeout=STOP_CAP_S)
    assert platform.proc.returncode == 0, platform.output
    assert "MoECollab stopped." in platform.output
    assert _wait_until_gone(platform.proc.pid, worker_pid) == []


def test_it_stops_the_worker_even_when_runplatform_is_killed(platform):
    _, worker_pid = platform.wait_for_url()
    platform.proc.kill()  # no clean-up of its own can run
    platform.proc.wait(timeout=30)
    assert _wait_until_gone(platform.proc.pid, worker_pid) == []


def test_it_refuses_a_taken_port_before_starting_a_worker(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items()
               if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
        env.update({"DJANGO_SETTINGS_MODULE": "moecollab_site.settings.local",
                    "MOECOLLAB_VAR_DIR": str(tmp_path / "var")})
        result = subprocess.run(
            [sys.executable, "manage.py", "runplatform", "--no-demo",
             "--addr", f"127.0.0.1:{port}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "another port" in result.stderr
    assert not (tmp_path / "var" / "worker.log").exists()  # no worker was started
