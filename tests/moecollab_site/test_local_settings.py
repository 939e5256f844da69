"""The settings of `make run`: DEBUG off unless asked for, a key of this installation's own."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

# settings parsed in subprocesses differ with DATABASE_URL / CELERY_BROKER_URL: both CI passes
pytestmark = pytest.mark.backends

SHOW = ("from django.conf import settings as s; "
        "print(s.DEBUG, s.SECRET_KEY, ','.join(s.ALLOWED_HOSTS))")


def _local(var_dir: Path, **extra: str) -> list[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "DEBUG"}}
    env.update({"DJANGO_SETTINGS_MODULE": "moecollab_site.settings.local",
                "MOECOLLAB_VAR_DIR": str(var_dir), **extra})
    result = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {SHOW}"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_it_serves_with_debug_off_on_the_local_hosts_by_default(tmp_path):
    debug, _, hosts = _local(tmp_path / "var")
    assert debug == "False"
    assert {"127.0.0.1", "localhost"} <= set(hosts.split(","))
    assert _local(tmp_path / "var", DEBUG="true")[0] == "True"


def test_it_makes_a_secret_key_on_first_start_and_keeps_it(tmp_path):
    first = _local(tmp_path / "a")[1]
    key_file = tmp_path / "a" / "secret-key.txt"
    assert key_file.read_text().strip() == first and len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # only its owner can read it
    assert _local(tmp_path / "a")[1] == first  # sessions survive a restart
    assert _local(tmp_path / "b")[1] != first  # no key shared between installations


def test_it_prefers_a_secret_key_from_the_environment(tmp_path):
    assert _local(tmp_path / "var", SECRET_KEY="k" * 60)[1] == "k" * 60
    assert not (tmp_path / "var" / "secret-key.txt").exists()
