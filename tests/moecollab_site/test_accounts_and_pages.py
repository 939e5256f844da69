"""Sign-up, log-in, roles, tokens, the base template and static files."""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from moecollab_site.roles import is_maintainer
from training.models import Job


def test_it_shows_the_navigation_on_the_home_page(client, db):
    page = client.get("/").content.decode()
    for label, href in [("Experts", "/experts/"), ("Leaderboards", "/leaderboards/"),
                        ("Jobs", "/jobs/"), ("Gating models", "/gating/"),
                        ("API docs", "/api/docs/")]:
        assert f'href="{href}">{label}</a>' in page
    for href in ["/experts/", "/leaderboards/", "/jobs/", "/gating/"]:
        assert client.get(href).status_code == 200, href


def test_it_serves_static_files_through_whitenoise(client, db):
    response = client.get("/static/css/site.css")
    assert response.status_code == 200
    assert b"--accent" in b"".join(response.streaming_content)


def test_it_signs_up_a_contributor_and_logs_them_in(client, db):
    response = client.post("/signup/", {
        "username": "newbie", "email": "newbie@example.org",
        "password1": "a-long-Passphrase-42", "password2": "a-long-Passphrase-42",
    })
    assert response.status_code == 302
    user = User.objects.get(username="newbie")
    assert list(user.groups.values_list("name", flat=True)) == ["contributor"]
    assert not is_maintainer(user)
    assert "newbie" in client.get("/").content.decode()


def test_it_explains_a_rejected_sign_up(client, db):
    response = client.post("/signup/", {"username": "x", "email": "not-an-email",
                                        "password1": "abc", "password2": "abd"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Enter a valid email address" in body
    assert "password fields didn" in body
    assert not User.objects.filter(username="x").exists()


def test_it_logs_in_and_out(client, owner):
    response = client.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 302
    assert "alice" in client.get("/").content.decode()
    client.post("/logout/")
    assert "Log in" in client.get("/").content.decode()


def test_it_hands_out_api_tokens_for_valid_credentials_only(client, owner):
    ok = client.post("/api/v1/auth/token/", {"username": "alice", "password": "pw-alice"})
    assert ok.status_code == 200 and len(ok.json()["token"]) == 40
    bad = client.post("/api/v1/auth/token/", {"username": "alice", "password": "nope"})
    assert bad.status_code == 400
    assert "Unable to log in" in bad.json()["error"]["message"]


def test_it_creates_a_maintainer_from_the_command_line(db):
    out = StringIO()
    call_command("create_maintainer", username="boss", password="s3cret-pass", stdout=out)
    user = User.objects.get(username="boss")
    assert is_maintainer(user) and user.check_password("s3cret-pass")
    assert "username=boss" in out.getvalue()


@pytest.mark.parametrize(("who", "status"), [("anonymous", 403), ("owner", 403),
                                            ("maintainer", 302)])
def test_it_lets_only_maintainers_start_a_job_from_the_page(client, who, status, owner,
                                                            maintainer):
    user = {"anonymous": None, "owner": owner, "maintainer": maintainer}[who]
    if user is not None:
        client.force_login(user)
    response = client.post("/jobs/start/", {"kind": "self_check"})
    assert response.status_code == status
    assert Job.objects.count() == (1 if status == 302 else 0)


def test_it_serves_the_openapi_schema_and_docs(client, db):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/jobs/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
