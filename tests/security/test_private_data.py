"""What is not public stays with its owner and the maintainers, on the pages and in the API.

Versions: public once approved or retired (ExpertVersion.objects.visible_to). Jobs: whoever
started them and maintainers (Job.objects.visible_to); tracebacks only to maintainers, everyone
else reads the one-line reason.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from experts.models import ExpertRequest, ExpertVersion
from tests.helpers import api_client_for, make_domain, make_expert, make_version
from training.models import Job

S = ExpertVersion.Status
REASON = "ValueError: the logits of the expert are not finite"
TRACEBACK = 'Traceback (most recent call last):\n  File "/srv/app/experts/handlers.py", line 9'


@pytest.fixture
def who(owner, stranger, maintainer):
    return {"anonymous": None, "owner": owner, "stranger": stranger, "maintainer": maintainer}


def _browser(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


# Versions -----------------------------------------------------------------------------------


@pytest.fixture
def hidden_latest(owner):
    """alice's expert: v1 approved, v2 waiting for review with its private-test metrics."""
    expert = make_expert(owner, make_domain("toy"), "toy-mlp")
    make_version(expert, status=S.APPROVED, accuracy=0.7)
    make_version(expert, status=S.AWAITING_REVIEW, accuracy=0.918273)
    return expert


@pytest.mark.parametrize("role, number", [("anonymous", 1), ("stranger", 1), ("owner", 2),
                                          ("maintainer", 2)])
def test_it_shows_the_latest_version_each_user_may_see(hidden_latest, who, role, number):
    client = api_client_for(who[role])
    detail = client.get(f"/api/v1/experts/{hidden_latest.pk}/").json()
    assert detail["latest_version"]["number"] == number
    listed = client.get("/api/v1/experts/").json()["results"]
    assert [e["latest_version"]["number"] for e in listed] == [number]
    if number == 1:
        assert "0.918273" not in str(detail) and "0.918273" not in str(listed)


@pytest.mark.parametrize("role, seen", [("anonymous", False), ("stranger", False),
                                        ("owner", True), ("maintainer", True)])
def test_it_filters_by_status_among_visible_versions_only(hidden_latest, who, role, seen):
    for url in ("/api/v1/experts/?status=awaiting_review",
                "/api/v1/experts/?status=awaiting_review&kind=head"):
        listed = api_client_for(who[role]).get(url).json()["results"]
        assert bool(listed) == seen, url
    page = _browser(who[role]).get("/experts/?status=awaiting_review")
    assert page.status_code == 200
    assert (b"toy-mlp" in page.content) == seen


@pytest.mark.parametrize("role, seen", [("anonymous", [1]), ("stranger", [1]),
                                        ("owner", [1, 2]), ("maintainer", [1, 2])])
def test_it_lists_only_visible_answers_of_a_request(hidden_latest, stranger, who, role, seen):
    req = ExpertRequest.objects.create(author=stranger, title="toy wanted",
                                       domain=hidden_latest.domain)
    hidden_latest.versions.update(answers_request=req)
    client = api_client_for(who[role])
    detail = client.get(f"/api/v1/requests/{req.pk}/").json()
    assert sorted(a["number"] for a in detail["answers"]) == seen
    listed = client.get("/api/v1/requests/").json()["results"]
    assert sorted(a["number"] for a in listed[0]["answers"]) == seen


# Jobs ---------------------------------------------------------------------------------------


@pytest.fixture
def failed_job(owner):
    """alice's validation job, failed with a reason and a traceback."""
    job = Job.objects.create(kind=Job.Kind.VALIDATE_EXPERT, created_by=owner,
                             status=Job.Status.RUNNING, metrics={"test_accuracy": 0.93})
    job.fail(REASON, traceback=TRACEBACK)
    return job


@pytest.mark.parametrize("role, visible", [("anonymous", False), ("stranger", False),
                                           ("owner", True), ("maintainer", True)])
def test_it_shows_a_job_only_to_who_started_it_and_maintainers(failed_job, who, role, visible):
    api, browser = api_client_for(who[role]), _browser(who[role])
    ids = [j["id"] for j in api.get("/api/v1/jobs/").json()["results"]]
    assert (failed_job.pk in ids) == visible
    assert api.get(f"/api/v1/jobs/{failed_job.pk}/").status_code == (200 if visible else 404)
    assert browser.get(f"/jobs/{failed_job.pk}/").status_code == (200 if visible else 404)
    assert browser.get(f"/jobs/{failed_job.pk}/status.json").status_code == (
        200 if visible else 404)
    listing = browser.get("/jobs/").content.decode()
    assert (f'href="/jobs/{failed_job.pk}/"' in listing) == visible
    home = browser.get("/").content.decode()
    assert (f'href="/jobs/{failed_job.pk}/"' in home) == visible
    gating = browser.get("/gating/").content.decode()
    assert (REASON in gating) == visible
    assert "test_accuracy" not in str(api.get("/api/v1/jobs/").json()) or visible


@pytest.mark.parametrize("role, full", [("owner", False), ("maintainer", True)])
def test_it_shows_tracebacks_to_maintainers_only(failed_job, who, role, full):
    api, browser = api_client_for(who[role]), _browser(who[role])
    for error in (api.get(f"/api/v1/jobs/{failed_job.pk}/").json()["error"],
                  api.get("/api/v1/jobs/").json()["results"][0]["error"],
                  browser.get(f"/jobs/{failed_job.pk}/status.json").json()["error"]):
        assert error == (f"{REASON}\n\n{TRACEBACK}" if full else REASON)
    page = browser.get(f"/jobs/{failed_job.pk}/").content.decode()
    assert REASON in page
    assert ("/srv/app/experts/handlers.py" in page) == full
    gating = browser.get("/gating/").content.decode()
    assert "/srv/app" not in gating


def test_it_asks_one_rule_of_the_database(failed_job, owner, stranger, maintainer):
    system = Job.objects.create(kind=Job.Kind.REFRESH_LEADERBOARDS)
    assert set(Job.objects.visible_to(AnonymousUser())) == set()
    assert set(Job.objects.visible_to(stranger)) == set()
    assert set(Job.objects.visible_to(owner)) == {failed_job}
    assert set(Job.objects.visible_to(maintainer)) == {failed_job, system}
