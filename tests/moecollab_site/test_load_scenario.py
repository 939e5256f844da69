"""The load scenario command runs briefly against a live server and reports every endpoint."""
from __future__ import annotations

import io
import json
import os

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from experts.models import Domain, Expert, LeaderboardEntry
from tests.faults.servers import AppServer
from tests.helpers import database_url_of


@pytest.fixture
def live_server_process(transactional_db, tmp_path, settings):
    from django.db import connection

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update({
        "DJANGO_SETTINGS_MODULE": "moecollab_site.settings.test",
        "DATABASE_URL": database_url_of(connection.settings_dict),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "MOECOLLAB_BROKER_DIR": str(tmp_path / "broker"),
        "LOG_LEVEL": "WARNING",
    })
    server = AppServer(env, tmp_path / "gunicorn.log")
    server.start()
    yield server
    server.stop()


def test_it_seeds_experts_and_reports_numbers_for_each_endpoint(live_server_process, tmp_path):
    Domain.objects.create(name="news", labels=["World", "Sports", "Business", "Sci/Tech"])
    Domain.objects.create(name="spam", labels=["ham", "spam"])
    out, report = io.StringIO(), tmp_path / "load.json"
    call_command("load_scenario", "--url", live_server_process.url, "--duration", "0.5",
                 "--concurrency", "2", "--seed-experts", "12", "--json", str(report),
                 stdout=out, stderr=io.StringIO())

    assert Expert.objects.filter(owner__username__startswith="load-contributor-").count() == 12
    assert LeaderboardEntry.objects.filter(board="domain").exists()
    results = {r["path"]: r for r in json.loads(report.read_text())["results"]}
    assert set(results) == {
        "/experts/", "/api/v1/experts/", "/leaderboards/", "/api/v1/leaderboards/contributors/",
        "/api/v1/leaderboards/domains/news/", "/api/v1/predict/"}
    for path, r in results.items():
        assert r["requests"] > 0 and r["req_per_s"] > 0, r
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"], r
        assert path in out.getvalue()
        if path != "/api/v1/predict/":
            assert r["ok"] == r["requests"], r
    # No gating model is in production here: predict answers its clear 503, and is counted.
    assert set(results["/api/v1/predict/"]["statuses"]) == {"503"}

    # Seeding again tops up instead of adding more.
    call_command("load_scenario", "--url", live_server_process.url, "--duration", "0.2",
                 "--only", "experts API", "--seed-experts", "12", stdout=io.StringIO())
    assert Expert.objects.filter(owner__username__startswith="load-contributor-").count() == 12


@pytest.mark.parametrize("args", [
    ["--url", "http://10.0.0.1:8000"],
    ["--url", "http://127.0.0.1:8000", "--duration", "1000"],
    ["--url", "http://127.0.0.1:8000", "--concurrency", "500"],
])
def test_it_refuses_non_loopback_or_unbounded_runs(args):
    with pytest.raises(CommandError):
        call_command("load_scenario", *args, stdout=io.StringIO())
