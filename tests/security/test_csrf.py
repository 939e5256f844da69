"""CSRF: every form of the site and every session-authenticated API write needs the token;
API clients that send a token header do not."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.security.routes import api_write_endpoints, fill, html_routes
from tests.security.test_permission_matrix import API_MATRIX, _path_values

# HTML routes that may take a POST without a CSRF token, and why. Keep this empty.
CSRF_EXEMPT: dict[str, str] = {}


def _csrf_refused(response) -> bool:
    return response.status_code == 403 and b"CSRF verification failed" in response.content


def _token(client: Client) -> str:
    client.get("/")  # the layout's log-out form sets the cookie
    return client.cookies["csrftoken"].value


@pytest.mark.parametrize("pattern", [r.pattern for r in html_routes()])
def test_it_refuses_a_post_without_the_csrf_token_on_every_page(pattern, world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["maintainer"])
    path = fill(pattern, {**_path_values(pattern, world), "kind": "train"})
    if pattern in CSRF_EXEMPT:
        pytest.fail(f"{pattern} is exempt from CSRF: {CSRF_EXEMPT[pattern]}")
    response = client.post(path, {"anything": "1"})
    assert _csrf_refused(response), (pattern, response.status_code)
    with_token = client.post(path, {"anything": "1", "csrfmiddlewaretoken": _token(client)})
    assert not _csrf_refused(with_token), f"{pattern} refuses even a POST with the token"


def test_it_refuses_a_log_in_without_the_csrf_token(owner):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert _csrf_refused(response)
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("endpoint", api_write_endpoints())
def test_it_refuses_session_api_writes_without_the_csrf_token(endpoint, world, artifact):
    method, pattern = endpoint.split(" ", 1)
    path = fill(pattern, _path_values(pattern, world))
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world["maintainer"])
    data, fmt = API_MATRIX[endpoint][1](world, "maintainer", artifact)
    response = getattr(client, method.lower())(path, data, format=fmt)
    assert response.status_code == 403, (endpoint, response.content[:300])
    assert "CSRF" in response.json()["error"]["message"]


@pytest.mark.parametrize("endpoint", api_write_endpoints())
def test_it_accepts_token_authenticated_api_writes_without_csrf(endpoint, world, artifact):
    from rest_framework.authtoken.models import Token

    method, pattern = endpoint.split(" ", 1)
    path = fill(pattern, _path_values(pattern, world))
    client = APIClient(enforce_csrf_checks=True)
    token, _ = Token.objects.get_or_create(user=world["maintainer"])
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    statuses, body = API_MATRIX[endpoint]
    data, fmt = body(world, "maintainer", artifact)
    response = getattr(client, method.lower())(path, data, format=fmt)
    assert response.status_code == statuses[3], (endpoint, response.content[:300])


def test_it_accepts_a_session_api_write_with_the_csrf_token(world):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world["owner"])
    token = _token(client)
    response = client.post("/api/v1/experts/", {"domain": "news", "name": "fresh"},
                           format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content
