"""/healthz reports database, broker and worker; 503 when the database or broker is down."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.utils import timezone

from tests.helpers import REPO
from training.models import WorkerHeartbeat

# settings parsed in subprocesses differ with DATABASE_URL / CELERY_BROKER_URL: both CI passes
pytestmark = pytest.mark.backends


def test_it_reports_ok_services_and_a_missing_worker(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is True
    assert body["worker"]["ok"] is False
    assert body["status"] == "degraded"


def test_it_counts_a_worker_with_a_fresh_heartbeat(client, db):
    WorkerHeartbeat.objects.create(hostname="w1@host", queues="cpu,gpu", last_seen=timezone.now())
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["worker"]["workers"][0]["hostname"] == "w1@host"
    assert body["worker"]["workers"][0]["queues"] == ["cpu", "gpu"]


def test_it_answers_503_naming_what_is_down_when_database_and_broker_are_unreachable():
    # A separate process pointed at ports where nothing listens: real connection failures.
    code = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "from django.conf import settings; settings.ALLOWED_HOSTS.append('testserver');"
        "r = Client().get('/healthz');"
        "print(json.dumps({'status': r.status_code, 'body': r.json()}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update({
        "DJANGO_SETTINGS_MODULE": "moecollab_site.settings.test",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/moecollab",
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
    })
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["status"] == 503
    assert out["body"]["status"] == "down"
    assert out["body"]["database"]["ok"] is False
    assert out["body"]["broker"]["ok"] is False
    assert out["body"]["broker"]["transport"] == "redis"
