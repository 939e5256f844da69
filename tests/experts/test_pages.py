"""Marketplace HTML pages: lists, model cards, domains, requests, leaderboards, notifications."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from experts import services
from experts.models import (
    DataSplit,
    Domain,
    Expert,
    ExpertRequest,
    ExpertVersion,
    LeaderboardEntry,
    Notification,
)
from tests.experts.pages_support import dataset_file
from tests.helpers import make_domain, make_expert, make_version

S = ExpertVersion.Status


@pytest.fixture
def domain(maintainer):
    return make_domain(created_by=maintainer)


@pytest.fixture
def expert(owner, domain):
    """The page tests' expert: alice's "sharp" on the toy domain (not conftest's news one)."""
    return make_expert(owner, domain, "sharp", license="MIT",
                       description="A sharp classifier")


def _login(client, user):
    if user is not None:
        client.force_login(user)
    return client


def _body(response) -> str:
    return response.content.decode()


# Reading ------------------------------------------------------------------------------------


def test_it_renders_the_public_pages_for_everyone(client, expert, owner, stranger, maintainer):
    make_version(expert, status=S.APPROVED, accuracy=0.8)
    req = services.request_create(user=owner, title="Want sarcasm")
    pages = ["/experts/", f"/experts/{expert.pk}/", f"/experts/{expert.pk}/versions/1/",
             "/experts/domains/", "/experts/domains/toy/", "/experts/requests/",
             f"/experts/requests/{req.pk}/", "/leaderboards/"]
    for user in (None, owner, stranger, maintainer):
        client.logout()
        _login(client, user)
        for url in pages:
            assert client.get(url).status_code == 200, (url, user)


def test_it_lists_experts_with_domain_owner_latest_status_and_accuracy(client, expert):
    make_version(expert, status=S.APPROVED, accuracy=0.8125)
    body = _body(client.get("/experts/"))
    assert f'href="/experts/{expert.pk}/">sharp</a>' in body
    assert 'href="/experts/domains/toy/">toy</a>' in body
    assert "alice" in body and "Approved" in body and "0.813" in body


def test_it_filters_and_searches_the_experts_list(client, owner, stranger, maintainer, domain):
    other = make_domain("news", labels=["world", "sports"], created_by=maintainer)
    a = make_expert(owner, domain, name="alpha", description="sentiment of tweets")
    b = make_expert(stranger, other, name="bravo", description="headlines")
    make_version(a, status=S.APPROVED, accuracy=0.9)
    vb = make_version(b, status=S.APPROVED, accuracy=0.7)
    ExpertVersion.objects.filter(pk=vb.pk).update(kind="branch")

    def names(query):
        body = _body(client.get("/experts/" + query))
        return {n for n in ("alpha", "bravo") if f">{n}</a>" in body}

    assert names("") == {"alpha", "bravo"}
    assert names("?domain=news") == {"bravo"}
    assert names("?kind=branch") == {"bravo"}
    assert names("?status=approved&contributor=alice") == {"alpha"}
    assert names("?q=tweets") == {"alpha"}
    assert names("?status=rejected") == set()


def test_it_paginates_the_experts_list(client, owner, domain):
    Expert.objects.bulk_create(Expert(owner=owner, domain=domain, name=f"e{i:02d}")
                               for i in range(25))
    first = _body(client.get("/experts/?domain=toy"))
    assert "page 1 of 2" in first and 'href="?domain=toy&amp;page=2"' in first
    assert "page 2 of 2" in _body(client.get("/experts/?domain=toy&page=2"))


def test_it_shows_the_model_card(client, expert):
    make_version(expert, status=S.APPROVED, accuracy=0.8125, macro_f1=0.75, with_files=True)
    ExpertVersion.objects.filter(expert=expert).update(download_count=3)
    body = _body(client.get(f"/experts/{expert.pk}/"))
    for text in ["A sharp classifier", "MIT", "head", "3330 parameters", "13.0\xa0KB",
                 "tiny-backbone", "abababababab", "0.813", "0.750", "Examples (n)", "40",
                 "private test", "Downloads</dt><dd>3"]:
        assert text in body, text
    url = f"/experts/{expert.pk}/versions/1/download/"
    assert f'href="{url}?file=weights"' in body and f'href="{url}?file=manifest"' in body


def test_it_shows_owner_actions_to_the_owner_only(client, expert, owner, stranger, maintainer):
    links = [f"/experts/{expert.pk}/upload/", f"/experts/{expert.pk}/train/",
             f"/experts/{expert.pk}/edit/"]
    assert all(link in _body(_login(client, owner).get(f"/experts/{expert.pk}/"))
               for link in links)
    for user in (None, stranger, maintainer):
        client.logout()
        body = _body(_login(client, user).get(f"/experts/{expert.pk}/"))
        assert not any(link in body for link in links)


def test_it_hides_unpublished_versions_from_strangers(client, expert, owner, stranger,
                                                      maintainer):
    make_version(expert, status=S.APPROVED, accuracy=0.8)
    make_version(expert, status=S.AWAITING_REVIEW, accuracy=0.9)
    for user, sees in [(None, False), (stranger, False), (owner, True), (maintainer, True)]:
        client.logout()
        _login(client, user)
        assert (f"/experts/{expert.pk}/versions/2/" in _body(
            client.get(f"/experts/{expert.pk}/"))) is sees
        assert client.get(f"/experts/{expert.pk}/versions/2/").status_code == (
            200 if sees else 404)


def test_it_downloads_approved_versions_and_counts_them(client, expert, owner, stranger):
    make_version(expert, status=S.APPROVED, with_files=True)
    make_version(expert, status=S.AWAITING_REVIEW, with_files=True)
    response = client.get(f"/experts/{expert.pk}/versions/1/download/?file=weights")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"WEIGHTS-1"
    assert "sharp-v1-weights.safetensors" in response["Content-Disposition"]
    manifest = client.get(f"/experts/{expert.pk}/versions/1/download/?file=manifest")
    assert b"".join(manifest.streaming_content) == b'{"kind": "head"}'
    assert ExpertVersion.objects.get(number=1).download_count == 2
    _login(client, stranger)
    assert client.get(f"/experts/{expert.pk}/versions/2/download/").status_code == 404
    client.logout()
    _login(client, owner)
    assert client.get(f"/experts/{expert.pk}/versions/2/download/").status_code == 200


# Experts: create and edit -------------------------------------------------------------------


def test_it_creates_experts_for_logged_in_contributors_only(client, owner, maintainer, domain):
    data = {"domain": "toy", "name": "fresh", "description": "d", "license": "MIT",
            "intended_use": "tweets", "training_data": "my tweets"}
    response = client.post("/experts/new/", data)
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert not Expert.objects.exists()
    for user in (owner, maintainer):
        _login(client, user)
        assert client.get("/experts/new/").status_code == 200
        response = client.post("/experts/new/", data)
        expert = Expert.objects.get(owner=user)
        assert response.status_code == 302 and response["Location"] == f"/experts/{expert.pk}/"
        assert (expert.intended_use, expert.training_data) == ("tweets", "my tweets")


def test_it_explains_a_refused_expert(client, owner, domain):
    make_expert(owner, domain, name="taken")
    _login(client, owner)
    response = client.post("/experts/new/", {"domain": "toy", "name": "taken"})
    assert response.status_code == 409
    assert "you already have an expert named &#x27;taken&#x27;" in _body(response)
    assert client.post("/experts/new/", {"domain": "nope", "name": "x"}).status_code == 400
    assert Expert.objects.count() == 1


def test_it_lets_only_the_owner_edit_the_card(client, expert, owner, stranger, maintainer):
    url = f"/experts/{expert.pk}/edit/"
    data = {"description": "new words", "license": "Apache-2.0", "intended_use": "",
            "training_data": ""}
    assert client.post(url, data)["Location"].startswith("/login/")
    for user in (stranger, maintainer):
        _login(client, user)
        assert client.get(url).status_code == 403
        response = client.post(url, data)
        assert response.status_code == 403
        assert f"only the owner of expert {expert} can edit it" in _body(response)
    expert.refresh_from_db()
    assert expert.description == "A sharp classifier"
    _login(client, owner)
    assert client.post(url, data).status_code == 302
    expert.refresh_from_db()
    assert (expert.description, expert.license) == ("new words", "Apache-2.0")


# Domains ------------------------------------------------------------------------------------


def test_it_lets_only_maintainers_create_domains(client, owner, maintainer):
    data = {"name": "spam", "description": "sms", "labels": "ham\nspam"}
    assert client.post("/experts/domains/new/", data)["Location"].startswith("/login/")
    _login(client, owner)
    assert client.get("/experts/domains/new/").status_code == 403
    assert client.post("/experts/domains/new/", data).status_code == 403
    assert "New domain" not in _body(client.get("/experts/domains/"))
    assert not Domain.objects.exists()
    _login(client, maintainer)
    assert "New domain" in _body(client.get("/experts/domains/"))
    response = client.post("/experts/domains/new/", data)
    assert response.status_code == 302 and response["Location"] == "/experts/domains/spam/"
    assert Domain.objects.get().labels == ["ham", "spam"]
    again = client.post("/experts/domains/new/", data)
    assert again.status_code == 409 and "a domain named &#x27;spam&#x27; already exists" in \
        _body(again)
    dup = client.post("/experts/domains/new/", {"name": "x2", "labels": "a, a"})
    assert dup.status_code == 400 and "labels must be distinct" in _body(dup)


def test_it_uploads_splits_for_maintainers_only(client, domain, owner, maintainer):
    url = "/experts/domains/toy/splits/"
    rows = [("good", "pos"), ("bad", "neg")]
    assert client.post(url, {"kind": "train", "file": dataset_file(rows)})[
        "Location"].startswith("/login/")
    _login(client, owner)
    assert client.post(url, {"kind": "train", "file": dataset_file(rows)}).status_code == 403
    assert not DataSplit.objects.exists()
    _login(client, maintainer)
    response = client.post(url, {"kind": "test", "file": dataset_file(rows)})
    assert response.status_code == 302
    response = client.post(url, {"kind": "train", "file": dataset_file(rows)})
    assert response.status_code == 302
    splits = {s.kind: s for s in DataSplit.objects.all()}
    assert splits["test"].is_private and not splits["train"].is_private
    assert splits["train"].n_rows == 2
    client.post(url, {"kind": "dev", "file": dataset_file(rows), "is_private": "on"})
    assert DataSplit.objects.get(kind="dev").is_private


def test_it_refuses_a_bad_split_with_its_line_number(client, domain, maintainer):
    _login(client, maintainer)
    bad = dataset_file([("good", "pos"), ("odd", "sarcasm")], name="train.jsonl")
    response = client.post("/experts/domains/toy/splits/", {"kind": "train", "file": bad})
    assert response.status_code == 400
    body = _body(response)
    assert "train.jsonl: line 2" in body and "sarcasm" in body
    assert not DataSplit.objects.exists()


def test_it_never_links_a_private_split_to_contributors(client, domain, owner, maintainer):
    rows = [("good", "pos"), ("bad", "neg")]
    services.domain_split_upload(user=maintainer, domain=domain, kind="test",
                                 upload=dataset_file(rows))
    services.domain_split_upload(user=maintainer, domain=domain, kind="train",
                                 upload=dataset_file(rows))
    private = "/experts/domains/toy/splits/test/download/"
    public = "/experts/domains/toy/splits/train/download/"
    for user in (None, owner):
        client.logout()
        body = _body(_login(client, user).get("/experts/domains/toy/"))
        assert private not in body and public in body
        assert "pos: 1" in body and "private" in body
        assert client.get(private).status_code == 403
        assert client.get(public).status_code == 200
    _login(client, maintainer)
    assert private in _body(client.get("/experts/domains/toy/"))
    assert b"good" in b"".join(client.get(private).streaming_content)


# Requests board -----------------------------------------------------------------------------


def test_it_posts_requests_for_logged_in_users(client, owner, domain):
    data = {"title": "Sarcasm detector", "description": "d", "domain": "toy",
            "target_metric": "accuracy >= 0.9"}
    assert client.post("/experts/requests/new/", data)["Location"].startswith("/login/")
    assert not ExpertRequest.objects.exists()
    _login(client, owner)
    data["dataset"] = dataset_file([("x", "pos")])
    response = client.post("/experts/requests/new/", data)
    req = ExpertRequest.objects.get()
    assert response["Location"] == f"/experts/requests/{req.pk}/"
    body = _body(client.get(response["Location"]))
    assert "Sarcasm detector" in body and "accuracy &gt;= 0.9" in body
    assert f"/experts/requests/{req.pk}/dataset/" in body
    assert b'"label": "pos"' in b"".join(
        client.get(f"/experts/requests/{req.pk}/dataset/").streaming_content)
    assert "Sarcasm detector" in _body(client.get("/experts/requests/"))


def test_it_refuses_a_request_dataset_with_its_line_number(client, owner, domain):
    _login(client, owner)
    response = client.post("/experts/requests/new/", {
        "title": "t", "domain": "toy",
        "dataset": SimpleUploadedFile("d.csv", b"text,label\nfine,pos\n,neg\n")})
    assert response.status_code == 400
    assert "d.csv: line 3" in _body(response)
    assert not ExpertRequest.objects.exists()


@pytest.mark.parametrize("who, status", [("author", 302), ("stranger", 403),
                                         ("maintainer", 302)])
def test_it_closes_requests_for_the_author_and_maintainers(client, owner, stranger, maintainer,
                                                           who, status):
    req = services.request_create(user=owner, title="Want sarcasm")
    user = {"author": owner, "stranger": stranger, "maintainer": maintainer}[who]
    _login(client, user)
    has_button = f"/experts/requests/{req.pk}/close/" in _body(
        client.get(f"/experts/requests/{req.pk}/"))
    assert has_button is (status == 302)
    response = client.post(f"/experts/requests/{req.pk}/close/")
    assert response.status_code == status
    req.refresh_from_db()
    assert req.status == ("closed" if status == 302 else "open")


def test_it_sends_anonymous_closers_to_the_login_page(client, owner):
    req = services.request_create(user=owner, title="Want sarcasm")
    assert client.post(f"/experts/requests/{req.pk}/close/")["Location"].startswith("/login/")
    assert ExpertRequest.objects.get().status == "open"


def test_it_lists_open_and_closed_requests(client, owner):
    services.request_create(user=owner, title="Still open")
    done = services.request_create(user=owner, title="All done")
    services.request_close(user=owner, request=done)
    assert "Still open" in _body(client.get("/experts/requests/"))
    assert "All done" not in _body(client.get("/experts/requests/"))
    assert "All done" in _body(client.get("/experts/requests/?status=closed"))
    body = _body(client.get("/experts/requests/?status=all"))
    assert "All done" in body and "Still open" in body


# Leaderboards, review queue, notifications --------------------------------------------------


def test_it_shows_leaderboards_with_evidence(client, expert, owner):
    version = make_version(expert, status=S.APPROVED, accuracy=0.8125, macro_f1=0.75)
    LeaderboardEntry.objects.create(
        board="domain", domain=expert.domain, version=version, user=owner, rank=1,
        accuracy=0.8125, macro_f1=0.75,
        evidence={"kind": "validation", "validation_job": 77, "split": "test", "n_eval": 40})
    LeaderboardEntry.objects.create(
        board="contributor", user=owner, rank=1, credit=0.0421, routing_share=0.5,
        evidence={"kind": "gating", "gating_version": 1, "gating_number": 3,
                  "method": "leave-contributor-out"})
    body = _body(client.get("/leaderboards/"))
    assert f'href="/experts/{expert.pk}/versions/1/">sharp v1</a>' in body
    assert 'href="/jobs/77/">validation job #77</a>' in body
    for text in ["0.813", "0.750", "0.0421", "50%", "gating v3", "leave-contributor-out"]:
        assert text in body, text
    assert 'href="/jobs/77/"' in _body(client.get("/experts/domains/toy/"))


def test_it_shows_the_review_queue_to_maintainers_only(client, expert, owner, stranger,
                                                       maintainer):
    rival = make_expert(stranger, expert.domain, name="rival")
    make_version(rival, status=S.APPROVED, accuracy=0.75)
    make_version(expert, status=S.AWAITING_REVIEW, accuracy=0.875)
    assert client.get("/experts/review/")["Location"].startswith("/login/")
    for user in (owner, stranger):
        _login(client, user)
        response = client.get("/experts/review/")
        assert response.status_code == 403
        assert "only maintainers see the review queue" in _body(response)
    _login(client, maintainer)
    body = _body(client.get("/experts/review/"))
    assert f'href="/experts/{expert.pk}/versions/1/">sharp v1</a>' in body
    assert "0.875" in body and "mallory/rival v1" in body and "+0.125" in body


def test_it_lists_notifications_and_marks_them_read(client, owner, settings):
    processors = settings.TEMPLATES[0]["OPTIONS"]["context_processors"]
    if "experts.context_processors.notifications" not in processors:
        settings.TEMPLATES = [{**settings.TEMPLATES[0], "OPTIONS": {
            **settings.TEMPLATES[0]["OPTIONS"],
            "context_processors": [*processors, "experts.context_processors.notifications"]}}]
    services.notify(user=owner, message="alice/sharp v1 set to approved:", link="/experts/1/")
    services.notify(user=owner, message="second one")
    assert client.get("/experts/notifications/")["Location"].startswith("/login/")
    _login(client, owner)
    body = _body(client.get("/experts/notifications/"))
    assert "alice/sharp v1 set to approved:" in body and "(2 unread)" in body
    assert 'title="unread">2</span>' in body
    assert client.get("/experts/notifications/read/").status_code == 405
    assert client.post("/experts/notifications/read/").status_code == 302
    assert not Notification.objects.filter(read=False).exists()
    assert 'title="unread"' not in _body(client.get("/experts/"))
