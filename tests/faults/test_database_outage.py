"""PostgreSQL unreachable for a moment: a live app server answers 503 and recovers by itself.

The outage is made by a TCP proxy between the app server and PostgreSQL, cut and restored by
the test; the PostgreSQL server itself (shared with others) is never stopped.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.faults.servers import AppServer, TcpProxy
from tests.helpers import REPO

SHARED_POSTGRES = ("127.0.0.1", 5432)


def _postgres_reachable(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture
def postgres_database(transactional_db, tmp_path):
    """(host, port, user, name) of a migrated PostgreSQL database the app server may use.

    On PostgreSQL runs that is the test database; on SQLite runs a scratch database is created
    on the shared server at 127.0.0.1:5432 for this test and dropped afterwards.
    """
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor == "postgresql":
        yield (settings_dict.get("HOST") or "127.0.0.1", int(settings_dict.get("PORT") or 5432),
               settings_dict.get("USER") or "postgres", settings_dict["NAME"])
        return
    if not _postgres_reachable(SHARED_POSTGRES):
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432 (CI starts one)")
    import psycopg2

    name = f"moecollab_fault_{os.getpid()}"
    admin = psycopg2.connect(host=SHARED_POSTGRES[0], port=SHARED_POSTGRES[1], user="postgres",
                             dbname="postgres", connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{name}"')
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "moecollab_site.settings.test",
               "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}"}
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                                 cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        yield (*SHARED_POSTGRES, "postgres", name)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def proxied_app(postgres_database, tmp_path, settings):
    """gunicorn on a database reached through a proxy the test can cut; persistent connections,
    so a connection that breaks while open must be noticed and replaced."""
    host, port, user, name = postgres_database
    proxy = TcpProxy((host, port))
    proxy.start()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update({
        "DJANGO_SETTINGS_MODULE": "moecollab_site.settings.test",
        "DATABASE_URL": f"postgres://{user}@127.0.0.1:{proxy.port}/{name}",
        "DATABASE_CONN_MAX_AGE": "600",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "MOECOLLAB_BROKER_DIR": str(tmp_path / "broker"),
        "LOG_LEVEL": "WARNING",
    })
    server = AppServer(env, tmp_path / "gunicorn.log")
    try:
        server.start()
        yield server, proxy
    finally:
        server.stop()
        proxy.cut()


def _json(body: bytes) -> dict:
    return json.loads(body.decode())


def test_it_answers_503_while_the_database_is_unreachable_and_recovers_without_restart(
        proxied_app):
    server, proxy = proxied_app
    status, _, body = server.get("/healthz", accept="application/json")
    assert status == 200, body
    assert server.get("/experts/")[0] == 200
    assert server.get("/api/v1/experts/", accept="application/json")[0] == 200
    workers = server.worker_pids()

    proxy.cut()  # open connections reset, new ones refused
    status, _, body = server.get("/healthz", accept="application/json")
    assert status == 503
    health = _json(body)
    assert health["status"] == "down" and health["database"]["ok"] is False
    assert health["database"]["error"]

    status, headers, body = server.get("/experts/")
    assert status == 503, body[:500]
    assert headers["Content-Type"].startswith("text/html") and headers["Retry-After"]
    assert b"database is unreachable" in body

    status, headers, body = server.get("/api/v1/experts/", accept="application/json")
    assert status == 503, body[:500]
    assert _json(body)["error"]["code"] == "database_unavailable"
    assert "database is unreachable" in _json(body)["error"]["message"]
    assert server.get("/leaderboards/")[0] == 503

    proxy.restore()
    # The very next requests succeed: the broken connection was dropped, not reused.
    assert server.get("/experts/")[0] == 200
    assert server.get("/api/v1/experts/", accept="application/json")[0] == 200
    status, _, body = server.get("/healthz", accept="application/json")
    assert status == 200 and _json(body)["database"]["ok"] is True

    # A kept-alive connection that dies between requests (a database restart while the site is
    # idle) is replaced before use: no request sees the outage once it is over.
    proxy.cut()
    proxy.restore()
    assert server.get("/api/v1/experts/", accept="application/json")[0] == 200
    assert server.get("/leaderboards/")[0] == 200

    assert server.worker_pids() == workers, "the app server's worker was restarted"
    assert "Traceback" not in server.log_path.read_text(errors="replace")


def test_it_turns_a_database_error_in_a_view_into_a_503_without_a_database(db, client,
                                                                          monkeypatch):
    from django.db import OperationalError

    from experts import selectors

    def unreachable(*args, **kwargs):
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed')

    monkeypatch.setattr(selectors, "expert_list", unreachable)
    page = client.get("/experts/")
    assert page.status_code == 503 and page["Retry-After"]
    assert b"database is unreachable" in page.content
    api = client.get("/api/v1/experts/", HTTP_ACCEPT="application/json")
    assert api.status_code == 503
    assert api.json()["error"]["code"] == "database_unavailable"
    # Other errors are still bugs, not outages.
    monkeypatch.setattr(selectors, "expert_list", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        client.get("/experts/")
