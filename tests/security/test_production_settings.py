"""Production settings: secure cookies, HSTS, HTTPS redirect, and the headers responses carry.

Each check imports moecollab_site.settings.production in a fresh interpreter, with a real
SECRET_KEY, as gunicorn would.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

SECRET = "k8#Qz1!vN0pR7sT4uW9xY2aB5cD8eF3gH6jK0mL3nP6qR9sT2uV5wX8yZ1aB4cD7"


def run_production(code: str, tmp_path, **env_overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "SECURE_SSL_REDIRECT",
                        "SECURE_HSTS_SECONDS", "MEDIA_ROOT", "MOECOLLAB_BROKER_DIR"}}
    env.update({
        "DJANGO_SETTINGS_MODULE": "moecollab_site.settings.production",
        "SECRET_KEY": SECRET,
        "ALLOWED_HOSTS": "testserver,moecollab.example.org",
        "MOECOLLAB_VAR_DIR": str(tmp_path),
        "STATIC_ROOT": str(tmp_path / "static"),
        **env_overrides,
    })
    script = ("import json, django; django.setup(); "
              "from django.conf import settings; from django.test import Client; "
              f"{code}")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_it_sets_secure_cookie_and_transport_flags(tmp_path):
    names = ["SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY",
             "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_SSL_REDIRECT",
             "X_FRAME_OPTIONS", "SECURE_CONTENT_TYPE_NOSNIFF", "SECURE_REFERRER_POLICY",
             "DEBUG", "SECURE_PROXY_SSL_HEADER"]
    got = run_production(
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))", tmp_path)
    assert got["SESSION_COOKIE_SECURE"] is True
    assert got["CSRF_COOKIE_SECURE"] is True
    assert got["SESSION_COOKIE_HTTPONLY"] is True
    assert got["SECURE_HSTS_SECONDS"] >= 31536000
    assert got["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert got["SECURE_SSL_REDIRECT"] is True
    assert got["X_FRAME_OPTIONS"] == "DENY"
    assert got["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert got["SECURE_REFERRER_POLICY"] in ("same-origin", "strict-origin-when-cross-origin",
                                             "no-referrer")
    assert got["DEBUG"] is False
    assert got["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_it_redirects_plain_http_to_https(tmp_path):
    got = run_production(
        "r = Client().get('/experts/?q=1'); "
        "print(json.dumps([r.status_code, r.get('Location')]))", tmp_path)
    assert got == [301, "https://testserver/experts/?q=1"]


@pytest.fixture(scope="module")
def production_responses(tmp_path_factory) -> dict:
    """Headers and cookies of a few real responses under production settings (no SSL redirect,
    so the test client's plain requests reach the views)."""
    tmp = tmp_path_factory.mktemp("production")
    code = (
        "from django.core.management import call_command; "
        "call_command('collectstatic', interactive=False, verbosity=0); "
        "c = Client(); out = {}; "
        "paths = ['/login/', '/api/v1/predict/', '/no-such-page/']; "
        "rs = {p: c.get(p, secure=True) for p in paths}; "
        "out = {p: {'status': r.status_code, 'headers': dict(r.headers.items()), "
        "'cookies': {k: {a: m[a] for a in ('secure', 'httponly', 'samesite')} "
        "for k, m in r.cookies.items()}} for p, r in rs.items()}; "
        "print(json.dumps(out))"
    )
    return run_production(code, tmp, SECURE_SSL_REDIRECT="0")


@pytest.mark.parametrize("path", ["/login/", "/api/v1/predict/", "/no-such-page/"])
def test_it_sends_security_headers_on_every_response(path, production_responses):
    response = production_responses[path]
    assert response["status"] in (200, 404, 405)
    headers = response["headers"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert headers.get("Cross-Origin-Opener-Policy") == "same-origin"
    assert "Server" not in headers or "Python" not in headers["Server"]


def test_it_marks_the_csrf_cookie_secure(production_responses):
    login = production_responses["/login/"]
    assert login["status"] == 200
    cookie = login["cookies"]["csrftoken"]
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Lax"
