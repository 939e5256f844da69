"""The command line's tests: a live server (reused from the API contract tests) and helpers to
run `moecollab` as a contributor would, with its own config folder and no inherited token."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api_contract.conftest import OFFLINE_ENV, demo, live_api  # noqa: F401 - fixtures


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self):
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class Cli:
    """`moecollab` (a console script, or `python -m moecollab_cli`) with a private config dir."""

    def __init__(self, command: list[str], home: Path, *, cwd: Path, pythonpath: str | None):
        self.command = command
        self.config_dir = home / "config"
        self.cwd = cwd
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                    "MOECOLLAB_CONFIG_DIR": str(self.config_dir), "LANG": "C.UTF-8",
                    "XDG_CACHE_HOME": str(home / "cache"), **OFFLINE_ENV}
        if pythonpath:
            self.env["PYTHONPATH"] = pythonpath

    @property
    def credentials(self) -> Path:
        return self.config_dir / "credentials.json"

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 600,
                 env: dict | None = None) -> Run:
        result = subprocess.run([*self.command, *args], cwd=self.cwd, input=stdin,
                                capture_output=True, text=True, timeout=timeout,
                                env={**self.env, **(env or {})})
        return Run(result.returncode, result.stdout, result.stderr)


@pytest.fixture
def cli_factory(tmp_path):
    def make(command: list[str], *, pythonpath: str | None = None) -> Cli:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        return Cli(command, home, cwd=tmp_path, pythonpath=pythonpath)

    return make
