"""A live API: gunicorn on loopback, on the test database, with the demo installation in it."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from tests.helpers import REPO

SERVER = Path(__file__).resolve().parent / "loopback_server.py"
# Nothing the server does may need the network: no model hub, no proxy.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_PROXY": "*",
               "HTTP_PROXY": "", "HTTPS_PROXY": "", "http_proxy": "", "https_proxy": ""}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


class ServerProcess:
    """gunicorn serving the project, in a child process on the test database."""

    def __init__(self, env: dict, log_path: Path):
        self.env = {**env, **OFFLINE_ENV}
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        cmd = [sys.executable, str(SERVER), "moecollab_site.wsgi:application",
               "--bind", self.url.removeprefix("http://"), "--workers", "1", "--threads", "2",
               "--timeout", "120", "--access-logfile", "-"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, start_new_session=True,
                                     stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_tail()}")
            try:
                # One request at a time: the first schema build must not race a second one.
                if _get(f"{self.url}/api/schema/", timeout=60) == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server never answered:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        import os

        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=30)


@dataclass
class LiveApi:
    url: str  # http://127.0.0.1:PORT
    token: str  # the maintainer's API token
    server: ServerProcess

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


@pytest.fixture
def demo(worker_env, maintainer, settings, tmp_path):
    """The demo installation (four domains, approved experts, a production gating model)."""
    from gating import serving
    from moecollab_site.demo import BUILT, demo_prepare

    settings.VAR_DIR = tmp_path / "var"
    result = demo_prepare(maintainer=maintainer, max_train=40, progress=None)
    assert result.status == BUILT, result.message
    serving.reset()
    return result


@pytest.fixture
def live_api(worker_env, demo, maintainer, tmp_path):
    server = ServerProcess(worker_env, tmp_path / "server.log")
    server.start()
    api = LiveApi(url=server.url, token=Token.objects.get_or_create(user=maintainer)[0].key,
                  server=server)
    # Load the production model once, so no fuzzed request waits for it.
    request = urllib.request.Request(f"{api.url}/api/v1/predict/", method="POST",
                                     data=json.dumps({"texts": ["warm up"]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
    yield api
    server.stop()
