"""Settings come from the environment; bad values stop start-up naming the variable."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

# settings parsed in subprocesses differ with DATABASE_URL / CELERY_BROKER_URL: both CI passes
pytestmark = pytest.mark.backends


def run_django(code: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY"}}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysqlx://nowhere"),
        ("DATABASE_URL", "not a url"),
        ("CELERY_BROKER_URL", "carrier-pigeon://loft"),
        ("MOECOLLAB_UPLOAD_MAX_MB", "lots"),
        ("MOECOLLAB_WORKER_STALE_S", "1"),
        ("CELERY_TASK_ALWAYS_EAGER", "perhaps"),
    ],
)
def test_it_refuses_malformed_values_naming_the_variable(variable, value):
    result = run_django("", DJANGO_SETTINGS_MODULE="moecollab_site.settings.local",
                       **{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


def test_it_requires_a_secret_key_in_production():
    result = run_django("", DJANGO_SETTINGS_MODULE="moecollab_site.settings.production")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_it_defaults_to_sqlite_and_the_embedded_broker():
    result = run_django(
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.MEDIA_ROOT)",
        DJANGO_SETTINGS_MODULE="moecollab_site.settings.local",
    )
    assert result.returncode == 0, result.stderr
    engine, broker, media = result.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert broker == "filesystem://"
    assert media.endswith("var/media")


def test_it_passes_check_deploy_with_production_settings():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update({
        "DJANGO_SETTINGS_MODULE": "moecollab_site.settings.production",
        "SECRET_KEY": "k8#Qz1!vN0pR7sT4uW9xY2aB5cD8eF3gH6jK0mL3nP6qR9sT2uV5wX8yZ1aB4cD7",
        "ALLOWED_HOSTS": "moecollab.example.org",
    })
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr and "WARNINGS" not in result.stdout
    assert "no issues" in result.stdout


@pytest.mark.parametrize(("variable", "value"), [
    ("MOECOLLAB_TRUSTED_PROXIES", "one"),
    ("MOECOLLAB_THROTTLE_PREDICT_TEXTS", "lots"),
    ("MOECOLLAB_THROTTLE_PREDICT_CHARS", "100/fortnight"),
    ("MOECOLLAB_PREDICT_CHUNK", "0"),
    ("MOECOLLAB_ENCODE_BACKEND", "onnx-int8"),
])
def test_it_refuses_malformed_throttle_and_proxy_settings(variable, value):
    result = run_django("", DJANGO_SETTINGS_MODULE="moecollab_site.settings.local",
                        **{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and variable in result.stderr


def test_it_reads_the_trusted_proxies_and_work_budgets_from_the_environment():
    result = run_django(
        "from django.conf import settings as s; "
        "print(s.REST_FRAMEWORK['NUM_PROXIES'], s.THROTTLE_RATES['predict_texts'], "
        "s.THROTTLE_RATES['predict_chars'])",
        DJANGO_SETTINGS_MODULE="moecollab_site.settings.local",
        MOECOLLAB_TRUSTED_PROXIES="2", MOECOLLAB_THROTTLE_PREDICT_TEXTS="50/min",
        MOECOLLAB_THROTTLE_PREDICT_CHARS="9000/hour")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "50/min", "9000/hour"]
