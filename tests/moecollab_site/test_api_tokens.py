"""API tokens end: revoked through the API or the account page, on log-out, and replaced when
the password changes. Each time the old token answers 401 and the next log-in gets a new one."""
from __future__ import annotations

from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

ME = "/api/v1/notifications/"  # any endpoint that needs a signed-in user


def _token_for(username: str, password: str) -> str:
    response = APIClient().post("/api/v1/auth/token/", {"username": username,
                                                        "password": password})
    assert response.status_code == 200, response.content
    return response.json()["token"]


def _with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_it_revokes_the_token_through_the_api(owner):
    token = _token_for("alice", "pw-alice")
    assert _with(token).get(ME).status_code == 200
    assert _token_for("alice", "pw-alice") == token  # until revoked, one token per user
    revoked = _with(token).delete("/api/v1/auth/token/")
    assert revoked.status_code == 204
    gone = _with(token).get(ME)
    assert gone.status_code == 401
    assert gone.json()["error"]["code"] == "authentication_failed"
    fresh = _token_for("alice", "pw-alice")
    assert fresh != token and _with(fresh).get(ME).status_code == 200


def test_it_refuses_to_revoke_without_credentials(owner):
    response = APIClient().delete("/api/v1/auth/token/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert _with("0" * 40).delete("/api/v1/auth/token/").status_code == 401


def test_it_revokes_the_token_on_log_out(owner):
    token = _token_for("alice", "pw-alice")
    browser = Client()
    assert browser.post("/login/", {"username": "alice", "password": "pw-alice"}
                        ).status_code == 302
    assert browser.post("/logout/").status_code == 302
    assert _with(token).get(ME).status_code == 401
    assert _token_for("alice", "pw-alice") != token


def test_it_replaces_the_token_when_the_password_changes(owner):
    token = _token_for("alice", "pw-alice")
    browser = Client()
    browser.force_login(owner)
    page = browser.get("/account/password/")
    assert page.status_code == 200 and b"Change your password" in page.content
    changed = browser.post("/account/password/", {
        "old_password": "pw-alice", "new_password1": "a-new-Passw0rd-77",
        "new_password2": "a-new-Passw0rd-77"}, follow=True)
    assert changed.status_code == 200
    assert b"Your password was changed" in changed.content
    assert _with(token).get(ME).status_code == 401
    new = Token.objects.get(user=owner).key
    assert new != token and new.encode() in changed.content  # shown once, on the account page
    assert _with(new).get(ME).status_code == 200
    assert browser.get("/account/").status_code == 200  # still signed in on this browser


def test_it_keeps_the_token_when_the_password_change_is_refused(owner):
    token = _token_for("alice", "pw-alice")
    browser = Client()
    browser.force_login(owner)
    refused = browser.post("/account/password/", {
        "old_password": "wrong", "new_password1": "a-new-Passw0rd-77",
        "new_password2": "a-new-Passw0rd-77"})
    assert refused.status_code == 200 and b"incorrectly" in refused.content
    assert _with(token).get(ME).status_code == 200


def test_it_creates_replaces_and_revokes_the_token_on_the_account_page(owner, stranger):
    browser = Client()
    assert browser.get("/account/").status_code == 302  # log in first
    browser.force_login(owner)
    page = browser.get("/account/").content.decode()
    assert "No API token" in page and "Revoke" not in page
    created = browser.post("/account/token/", {"action": "rotate"}, follow=True)
    first = Token.objects.get(user=owner).key
    assert first in created.content.decode()
    assert _with(first).get(ME).status_code == 200
    assert first not in browser.get("/account/").content.decode()  # shown only once
    browser.post("/account/token/", {"action": "rotate"})
    second = Token.objects.get(user=owner).key
    assert second != first and _with(first).get(ME).status_code == 401
    stranger_token = Token.objects.create(user=stranger).key
    revoked = browser.post("/account/token/", {"action": "revoke"}, follow=True)
    assert b"API token revoked" in revoked.content
    assert not Token.objects.filter(user=owner).exists()
    assert _with(second).get(ME).status_code == 401
    assert _with(stranger_token).get(ME).status_code == 200  # only one's own token
    assert browser.post("/account/token/", {"action": "bake"}).status_code == 400
    assert browser.get("/account/token/").status_code == 405


def test_it_describes_token_revocation_in_the_schema(client):
    import json

    schema = json.loads(client.get("/api/schema/?format=json").content)
    operation = schema["paths"]["/api/v1/auth/token/"]["delete"]
    assert {"204", "401", "429"} <= set(operation["responses"])
    assert "revoke" in operation["description"].lower()
