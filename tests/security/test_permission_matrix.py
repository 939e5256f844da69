"""Who may do what, for every write endpoint of the API and every form of the site.

The endpoints come from the URL conf: a new write route without a row in the tables below fails
its test. Each row declares the status for anonymous, the owner of the object (alice), another
contributor (mallory) and a maintainer (maya); a refusal must leave every table unchanged.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token

from experts.models import (
    DataSplit,
    Domain,
    Expert,
    ExpertRequest,
    ExpertVersion,
    Notification,
    ReviewComment,
)
from gating.models import GatingVersion, Promotion
from gating.serving import reset as serving_reset
from tests.helpers import api_client_for
from tests.security.routes import api_write_endpoints, fill, html_write_routes
from training.models import Job

ROLES = ("anonymous", "owner", "stranger", "maintainer")
DATASET = b'{"text": "Stocks fell", "label": "Business"}\n{"text": "A goal", "label": "Sports"}\n'
LOGIN = "login"  # an HTML refusal that sends the visitor to the log-in page


def _file(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


def _artifact_files(w, artifact) -> dict:
    return {"manifest": _file("manifest.json", artifact[0]),
            "weights": _file("weights.safetensors", artifact[1])}


def _credentials(w, role) -> dict:
    if role == "anonymous":
        return {"username": "nobody", "password": "guess"}
    return {"username": w[role].username, "password": f"pw-{w[role].username}"}


# (anonymous, owner, stranger, maintainer), request body (world, role, artifact) -> (data, format)
API_MATRIX = {
    "POST api/v1/auth/token/": ((400, 200, 200, 200),
                                lambda w, r, a: (_credentials(w, r), "json")),
    # revokes the caller's own token (the one it sends)
    "DELETE api/v1/auth/token/": ((401, 204, 204, 204), lambda w, r, a: ({}, "json")),
    "POST api/v1/domains/": ((401, 403, 403, 201),
                             lambda w, r, a: ({"name": "legal", "labels": ["a", "b"]}, "json")),
    "POST api/v1/domains/<slug:name>/splits/": (
        (401, 403, 403, 201),
        lambda w, r, a: ({"kind": "dev", "file": _file("d.jsonl", DATASET)}, "multipart")),
    "POST api/v1/experts/": ((401, 201, 201, 201),
                             lambda w, r, a: ({"domain": "news", "name": "fresh"}, "json")),
    "PATCH api/v1/experts/<int:pk>/": ((401, 200, 403, 403),
                                       lambda w, r, a: ({"description": "mine"}, "json")),
    "POST api/v1/experts/<int:pk>/train/": (
        (401, 201, 403, 403),
        lambda w, r, a: ({"dataset": _file("d.jsonl", DATASET)}, "multipart")),
    "POST api/v1/experts/<int:pk>/versions/": (
        (401, 201, 403, 403), lambda w, r, a: (_artifact_files(w, a), "multipart")),
    # mallory cannot even see a version that is not approved: 404, not 403
    "POST api/v1/experts/<int:pk>/versions/<int:number>/review/": (
        (401, 403, 404, 200), lambda w, r, a: ({"action": "approve"}, "json")),
    "POST api/v1/requests/": ((401, 201, 201, 201),
                              lambda w, r, a: ({"title": "Want spam"}, "json")),
    "POST api/v1/requests/<int:pk>/close/": ((401, 200, 403, 200), lambda w, r, a: ({}, "json")),
    "POST api/v1/notifications/": ((401, 200, 200, 200), lambda w, r, a: ({}, "json")),
    "POST api/v1/jobs/": ((401, 403, 403, 201),
                          lambda w, r, a: ({"kind": "self_check"}, "json")),
    "POST api/v1/jobs/<int:pk>/cancel/": ((401, 403, 403, 200), lambda w, r, a: ({}, "json")),
    # A seed the world's gating versions were not trained with: an identical request is a 409.
    "POST api/v1/gating/": ((401, 403, 403, 201), lambda w, r, a: ({"params": {"seed": 7}},
                                                                   "json")),
    "POST api/v1/gating/<int:pk>/promote/": ((401, 403, 403, 201),
                                             lambda w, r, a: ({}, "json")),
    "POST api/v1/gating/rollback/": ((401, 403, 403, 200), lambda w, r, a: ({}, "json")),
    # open to everyone, like the playground; nothing is in production here
    "POST api/v1/predict/": ((503, 503, 503, 503),
                             lambda w, r, a: ({"texts": ["hello"]}, "json")),
}
# Writes that succeed without changing a table the snapshot watches.
STATELESS = {"POST api/v1/auth/token/", "login/", "logout/", "signup/"}

HTML_MATRIX = {
    "signup/": ((302, 302, 302, 302),
                lambda w, r, a: {"username": "newbie", "email": "n@example.org",
                                 "password1": "a-long-pass-phrase-41", "password2":
                                 "a-long-pass-phrase-41"}),
    "login/": ((200, 302, 302, 302), lambda w, r, a: _credentials(w, r)),
    "logout/": ((302, 302, 302, 302), lambda w, r, a: {}),
    # one's own API token and password; the page shows the new token (no redirect)
    "account/token/": ((LOGIN, 200, 200, 200), lambda w, r, a: {"action": "rotate"}),
    "account/password/": ((LOGIN, 200, 200, 200),
                          lambda w, r, a: {"old_password": _credentials(w, r)["password"],
                                           "new_password1": "a-new-Passw0rd-77",
                                           "new_password2": "a-new-Passw0rd-77"}),
    "experts/new/": ((LOGIN, 302, 302, 302),
                     lambda w, r, a: {"domain": "news", "name": "fresh"}),
    "experts/notifications/read/": ((LOGIN, 302, 302, 302), lambda w, r, a: {}),
    "experts/domains/new/": ((LOGIN, 403, 403, 302),
                             lambda w, r, a: {"name": "legal", "labels": "a\nb"}),
    "experts/domains/<slug:name>/splits/": (
        (LOGIN, 403, 403, 302), lambda w, r, a: {"kind": "dev",
                                                 "file": _file("d.jsonl", DATASET)}),
    "experts/domains/<slug:name>/guide/": (
        (LOGIN, 403, 403, 302), lambda w, r, a: {"examples": "Where is Lima?",
                                                 "label_help": ""}),
    "experts/requests/new/": ((LOGIN, 302, 302, 302), lambda w, r, a: {"title": "Want spam"}),
    "experts/requests/<int:pk>/close/": ((LOGIN, 302, 403, 302), lambda w, r, a: {}),
    "experts/<int:pk>/edit/": ((LOGIN, 302, 403, 403),
                               lambda w, r, a: {"description": "mine", "license": "MIT"}),
    "experts/<int:pk>/upload/": ((LOGIN, 302, 403, 403),
                                 lambda w, r, a: _artifact_files(w, a)),
    "experts/<int:pk>/train/": ((LOGIN, 302, 403, 403),
                                lambda w, r, a: {"dataset": _file("d.jsonl", DATASET),
                                                 "kind": "head"}),
    "experts/<int:pk>/versions/<int:number>/review/": (
        (LOGIN, 403, 404, 302), lambda w, r, a: {"action": "approve"}),
    "gating/train/": ((403, 403, 403, 302), lambda w, r, a: {"seed": "7"}),
    "gating/rollback/": ((403, 403, 403, 302), lambda w, r, a: {}),
    "gating/playground/": ((503, 503, 503, 503), lambda w, r, a: {"texts": "hello"}),
    "gating/<int:pk>/promote/": ((403, 403, 403, 302), lambda w, r, a: {}),
    "jobs/start/": ((403, 403, 403, 302), lambda w, r, a: {"kind": "self_check"}),
    "jobs/<int:pk>/cancel/": ((403, 403, 403, 302), lambda w, r, a: {}),
}


def _path_values(pattern: str, w: dict) -> dict:
    """The object each route acts on: alice's expert/request, the queued job, gating v1."""
    pk = (w["request"].pk if "requests/" in pattern else w["job"].pk if "jobs/" in pattern
          else w["gating"].pk if "gating/" in pattern else w["expert"].pk)
    return {"pk": pk, "number": w["pending"].number, "name": w["domain"].name}


def _snapshot() -> dict:
    return {
        "users": User.objects.count(),
        "domains": list(Domain.objects.values_list("name", "examples", "label_help")),
        "splits": list(DataSplit.objects.values_list("pk", "sha256")),
        "experts": list(Expert.objects.values_list("pk", "description", "license")),
        "versions": list(ExpertVersion.objects.values_list("pk", "status")),
        "comments": ReviewComment.objects.count(),
        "requests": list(ExpertRequest.objects.values_list("pk", "status")),
        "notifications": list(Notification.objects.values_list("pk", "read")),
        "jobs": list(Job.objects.values_list("pk", "status", "cancel_requested")),
        "gating": list(GatingVersion.objects.values_list("pk", "status")),
        "promotions": list(Promotion.objects.values_list("pk", "rolled_back")),
        "tokens": sorted(Token.objects.values_list("user_id", "key")),
    }


@pytest.fixture(autouse=True)
def no_production_model():
    serving_reset()
    yield
    serving_reset()


def _check_effect(key: str, expected, status: int, before: dict) -> None:
    if isinstance(expected, int) and expected >= 400 or expected == LOGIN:
        assert _snapshot() == before, f"{key} was refused ({status}) but changed data"
    elif key not in STATELESS:
        assert _snapshot() != before, f"{key} answered {status} but changed nothing"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", api_write_endpoints())
def test_it_enforces_the_api_permission_matrix(endpoint, role, world, artifact):
    assert endpoint in API_MATRIX, f"{endpoint} has no row in API_MATRIX: declare who may call it"
    statuses, body = API_MATRIX[endpoint]
    expected = statuses[ROLES.index(role)]
    method, pattern = endpoint.split(" ", 1)
    data, fmt = body(world, role, artifact)
    client = api_client_for(world.get(role))
    before = _snapshot()
    response = getattr(client, method.lower())(fill(pattern, _path_values(pattern, world)),
                                               data, format=fmt)
    assert response.status_code == expected, (endpoint, role, response.content[:300])
    if expected >= 400:
        assert response.json()["error"]["message"]
    _check_effect(endpoint, expected, response.status_code, before)


def test_it_has_no_stale_rows_in_the_matrices():
    assert sorted(API_MATRIX) == api_write_endpoints()
    assert sorted(HTML_MATRIX) == html_write_routes()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("pattern", html_write_routes())
def test_it_enforces_the_html_permission_matrix(pattern, role, world, artifact):
    assert pattern in HTML_MATRIX, f"{pattern} has no row in HTML_MATRIX: declare who may post"
    statuses, body = HTML_MATRIX[pattern]
    expected = statuses[ROLES.index(role)]
    client = Client()
    if role != "anonymous":
        client.force_login(world[role])
    before = _snapshot()
    response = client.post(fill(pattern, _path_values(pattern, world)), body(world, role, artifact))
    if expected == LOGIN:
        assert response.status_code == 302, (pattern, role, response.status_code)
        assert response["Location"].startswith("/login/?next="), response["Location"]
    else:
        assert response.status_code == expected, (pattern, role, response.content[:300])
        if expected == 302:
            assert not response["Location"].startswith("/login/"), response["Location"]
    _check_effect(pattern, expected, response.status_code, before)
