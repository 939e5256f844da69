"""The marketplace API: domains, experts, uploads, review, requests, leaderboards."""
from __future__ import annotations

import json
import math
import struct

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from experts import services
from experts.leaderboards import leaderboards_refresh
from experts.models import DataSplit, Domain, Expert, ExpertRequest, ExpertVersion, Notification
from tests.helpers import api_client_for, make_artifact, media_files
from training.models import Job


def upload(client, expert_id, manifest: bytes, weights: bytes, **extra):
    return client.post(
        f"/api/v1/experts/{expert_id}/versions/",
        {"manifest": SimpleUploadedFile("manifest.json", manifest),
         "weights": SimpleUploadedFile("weights.safetensors", weights), **extra},
        format="multipart",
    )


def clients(owner, stranger, maintainer):
    return {"anonymous": api_client_for(None), "owner": api_client_for(owner),
            "stranger": api_client_for(stranger), "maintainer": api_client_for(maintainer)}


# Domains -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("who", "status"), [("anonymous", 401), ("owner", 403),
                                            ("stranger", 403), ("maintainer", 201)])
def test_it_lets_only_maintainers_create_domains(who, status, owner, stranger, maintainer):
    response = clients(owner, stranger, maintainer)[who].post(
        "/api/v1/domains/", {"name": "legal", "labels": ["contract", "tort"]}, format="json")
    assert response.status_code == status, response.content
    assert Domain.objects.filter(name="legal").exists() == (status == 201)


def test_it_refuses_bad_domains_with_a_reason(maintainer, news):
    client = api_client_for(maintainer)
    dup = client.post("/api/v1/domains/", {"name": "news", "labels": ["a", "b"]}, format="json")
    assert dup.status_code == 409 and "already exists" in dup.json()["error"]["message"]
    same = client.post("/api/v1/domains/", {"name": "x", "labels": ["a", "a"]}, format="json")
    assert same.status_code == 400 and "distinct" in same.json()["error"]["message"]
    name = client.post("/api/v1/domains/", {"name": "Bad Name!", "labels": ["a"]}, format="json")
    assert name.status_code == 400 and "lowercase" in name.json()["error"]["message"]


@pytest.mark.parametrize(("who", "status"), [("anonymous", 401), ("owner", 403),
                                            ("stranger", 403), ("maintainer", 201)])
def test_it_lets_only_maintainers_upload_splits(who, status, owner, stranger, maintainer, news):
    data = b'{"text": "Stocks fell", "label": "Business"}\n{"text": "A goal", "label": "Sports"}\n'
    response = clients(owner, stranger, maintainer)[who].post(
        "/api/v1/domains/news/splits/",
        {"kind": "test", "file": SimpleUploadedFile("test.jsonl", data)}, format="multipart")
    assert response.status_code == status, response.content
    assert DataSplit.objects.count() == (1 if status == 201 else 0)
    if status == 201:
        split = DataSplit.objects.get()
        assert split.is_private and split.n_rows == 2
        assert split.label_counts == {"Business": 1, "Sports": 1}


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("d.jsonl", b'{"text": "ok", "label": "World"}\n{"text": "caf\xe9", "label": "World"}\n',
         "line 2: not valid UTF-8"),
        ("d.jsonl", b'{"text": "ok", "label": "World"}\n{"text": "x"}\n',
         "line 2: missing column 'label'"),
        ("d.jsonl", b'{"text": "ok", "label": "Weather"}\n', "line 1: unknown label 'Weather'"),
        ("d.jsonl", b'{"text": "ok", "label": "World"}\n\n{"text": "b", "label": "World"}\n',
         "line 2: empty row"),
        ("d.jsonl", b'{"text": "   ", "label": "World"}\n', "line 1: empty or missing text"),
        ("d.csv", b"body,label\nhello,World\n", "line 1: missing column 'text'"),
        ("d.csv", b"text,label\nhello,World\nbye,Nope\n", "line 3: unknown label 'Nope'"),
        ("d.txt", b"hello", "expected a .jsonl or .csv file"),
        ("d.jsonl", b'{"text": "' + b"x" * 300_000 + b'", "label": "World"}\n',
         "line 1: longer than"),
    ],
)
def test_it_refuses_a_bad_dataset_naming_the_line(maintainer, news, filename, content, message,
                                                  media_root):
    response = api_client_for(maintainer).post(
        "/api/v1/domains/news/splits/",
        {"kind": "train", "file": SimpleUploadedFile(filename, content)}, format="multipart")
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert DataSplit.objects.count() == 0
    assert media_files(media_root) == []


def test_it_caps_the_number_of_rows(maintainer, news, monkeypatch):
    monkeypatch.setattr(services, "MAX_DATASET_ROWS", 3)
    rows = b"".join(b'{"text": "t%d", "label": "World"}\n' % i for i in range(5))
    response = api_client_for(maintainer).post(
        "/api/v1/domains/news/splits/",
        {"kind": "train", "file": SimpleUploadedFile("d.jsonl", rows)}, format="multipart")
    assert response.status_code == 400
    assert "more than 3 rows" in response.json()["error"]["message"]


def test_it_hides_private_split_contents_but_shows_their_size(client, news, maintainer):
    services.domain_split_upload(
        user=maintainer, domain=news, kind="test",
        upload=SimpleUploadedFile("t.jsonl", b'{"text": "a", "label": "World"}\n'))
    body = client.get("/api/v1/domains/news/").json()
    assert body["splits"] == [{**body["splits"][0], "kind": "test", "is_private": True,
                               "n_rows": 1}]
    assert "file" not in body["splits"][0]


# Experts and uploads -------------------------------------------------------------------------

def test_it_creates_experts_for_signed_in_users_only(owner, news):
    anon = api_client_for(None).post("/api/v1/experts/", {"domain": "news", "name": "x"},
                                     format="json")
    assert anon.status_code == 401
    ok = api_client_for(owner).post("/api/v1/experts/", {"domain": "news", "name": "x"},
                                    format="json")
    assert ok.status_code == 201 and ok.json()["owner"] == "alice"
    again = api_client_for(owner).post("/api/v1/experts/", {"domain": "news", "name": "x"},
                                       format="json")
    assert again.status_code == 409


@pytest.mark.parametrize(("who", "status"), [("anonymous", 401), ("owner", 201),
                                            ("stranger", 403), ("maintainer", 403)])
def test_it_lets_only_the_owner_upload_versions(who, status, owner, stranger, maintainer, expert,
                                                artifact, media_root):
    response = upload(clients(owner, stranger, maintainer)[who], expert.pk, *artifact)
    assert response.status_code == status, response.content
    if status == 201:
        body = response.json()
        assert body["number"] == 1 and body["status"] == "validating"
        assert body["kind"] == "head" and body["n_parameters"] > 0
        version = ExpertVersion.objects.get()
        job = Job.objects.get(kind=Job.Kind.VALIDATE_EXPERT)
        assert job.params == {"version_id": version.pk} and job.queue == "cpu"
        assert len(media_files(media_root)) == 2
    else:
        assert ExpertVersion.objects.count() == 0 and media_files(media_root) == []


def _tamper_header(weights: bytes, edit) -> bytes:
    (n,) = struct.unpack("<Q", weights[:8])
    header = json.loads(weights[8:8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + weights[8 + n:]


def _nan_weights(weights: bytes) -> bytes:
    (n,) = struct.unpack("<Q", weights[:8])
    header = json.loads(weights[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    begin = 8 + n + header[name]["data_offsets"][0]
    return weights[:begin] + struct.pack("<f", math.nan) + weights[begin + 4:]


def _manifest_edit(manifest: bytes, edit) -> bytes:
    data = json.loads(manifest)
    edit(data)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("not safetensors", 400, "safetensors header"),
        ("truncated", 400, "truncated"),
        ("schema", 400, "manifest.labels"),
        ("extra field", 400, "unknown field 'colour'"),
        ("wrong backbone", 400, "this platform runs"),
        ("shape mismatch", 400, "shape"),
        ("wrong dtype", 400, "dtype"),
        ("nan", 400, "NaN"),
        ("wrong domain", 400, "does not match the expert's domain"),
        ("not json", 400, "not valid UTF-8 JSON"),
    ],
)
def test_it_refuses_each_kind_of_bad_artifact_leaving_nothing(case, status, message, owner,
                                                              expert, artifact, media_root):
    manifest, weights = artifact
    if case == "not safetensors":
        weights = b"\x80\x04\x95pickle-not-safetensors" * 10
    elif case == "truncated":
        weights = weights[: len(weights) // 2]
    elif case == "schema":
        manifest = _manifest_edit(manifest, lambda m: m.update(labels=[]))
    elif case == "extra field":
        manifest = _manifest_edit(manifest, lambda m: m.update(colour="blue"))
    elif case == "wrong backbone":
        manifest = _manifest_edit(manifest, lambda m: m["backbone"].update(fingerprint="0" * 64))
    elif case == "shape mismatch":
        def grow(m):
            first = next(iter(m["tensors"]))
            m["tensors"][first]["shape"] = [s + 1 for s in m["tensors"][first]["shape"]]
        manifest = _manifest_edit(manifest, grow)
    elif case == "wrong dtype":
        def to_int(h):
            first = next(k for k in h if k != "__metadata__")
            h[first]["dtype"] = "I32"
        weights = _tamper_header(weights, to_int)
    elif case == "nan":
        weights = _nan_weights(weights)
    elif case == "wrong domain":
        manifest = _manifest_edit(manifest, lambda m: m.update(domain="spam"))
    elif case == "not json":
        manifest = b"\xff{not json"
    response = upload(api_client_for(owner), expert.pk, manifest, weights)
    assert response.status_code == status, response.content
    assert message in response.json()["error"]["message"]
    assert ExpertVersion.objects.count() == 0
    assert Job.objects.count() == 0
    assert media_files(media_root) == []


def test_it_refuses_an_oversized_upload_before_reading_it(owner, expert, artifact, settings,
                                                          media_root):
    settings.MOECOLLAB_UPLOAD_MAX_BYTES = 1024
    response = upload(api_client_for(owner), expert.pk, *artifact)
    assert response.status_code == 413
    assert "limit" in response.json()["error"]["message"]
    assert ExpertVersion.objects.count() == 0 and media_files(media_root) == []


def test_it_refuses_a_duplicate_of_existing_weights(owner, stranger, news, expert, artifact,
                                                    media_root):
    assert upload(api_client_for(owner), expert.pk, *artifact).status_code == 201
    other = Expert.objects.create(owner=stranger, domain=news, name="copycat")
    response = upload(api_client_for(stranger), other.pk, *artifact)
    assert response.status_code == 409
    assert "duplicate weights: identical to alice/news-mlp v1" in response.json()["error"][
        "message"]
    assert ExpertVersion.objects.count() == 1 and len(media_files(media_root)) == 2


# Review ----------------------------------------------------------------------------------

@pytest.fixture
def awaiting(owner, expert, artifact) -> ExpertVersion:
    upload(api_client_for(owner), expert.pk, *artifact)
    version = ExpertVersion.objects.get()
    ExpertVersion.objects.filter(pk=version.pk).update(
        status=ExpertVersion.Status.AWAITING_REVIEW,
        metrics={"test_accuracy": 0.9, "test_macro_f1": 0.88, "n_eval": 100})
    version.refresh_from_db()
    return version


@pytest.mark.parametrize(("who", "status"), [("anonymous", 401), ("owner", 403),
                                            ("stranger", 404), ("maintainer", 200)])
def test_it_lets_only_maintainers_review(who, status, owner, stranger, maintainer, awaiting):
    response = clients(owner, stranger, maintainer)[who].post(
        f"/api/v1/experts/{awaiting.expert_id}/versions/1/review/",
        {"action": "approve", "comment": "solid"}, format="json")
    assert response.status_code == status, response.content
    awaiting.refresh_from_db()
    expected = "approved" if status == 200 else "awaiting_review"
    assert awaiting.status == expected


def test_it_walks_the_review_workflow_and_notifies_the_owner(owner, maintainer, awaiting):
    client = api_client_for(maintainer)
    url = f"/api/v1/experts/{awaiting.expert_id}/versions/1/review/"
    changes = client.post(url, {"action": "request_changes", "comment": "add a card"},
                          format="json")
    assert changes.json()["status"] == "changes_requested"
    retire = client.post(url, {"action": "retire"}, format="json")
    assert retire.status_code == 409
    assert "cannot retire a version that is changes requested" in retire.json()["error"][
        "message"]
    assert client.post(url, {"action": "approve"}, format="json").json()["status"] == "approved"
    assert client.post(url, {"action": "retire"}, format="json").json()["status"] == "retired"
    messages = list(Notification.objects.filter(user=owner).values_list("message", flat=True))
    assert any("changes requested" in m and "add a card" in m for m in messages)
    assert any("retired" in m for m in messages)
    thread = client.get(f"/api/v1/experts/{awaiting.expert_id}/versions/1/").json()["comments"]
    assert [c["action"] for c in thread] == ["request_changes", "approve", "retire"]
    assert Job.objects.filter(kind=Job.Kind.REFRESH_LEADERBOARDS).count() == 2


def test_it_lets_the_owner_comment_but_not_a_stranger(owner, stranger, awaiting):
    url = f"/api/v1/experts/{awaiting.expert_id}/versions/1/review/"
    ok = api_client_for(owner).post(url, {"action": "comment", "comment": "updated card"},
                                    format="json")
    assert ok.status_code == 200
    ExpertVersion.objects.filter(pk=awaiting.pk).update(status="approved")
    nope = api_client_for(stranger).post(url, {"action": "comment", "comment": "hi"},
                                         format="json")
    assert nope.status_code == 403


def test_it_hides_unapproved_versions_from_others_and_counts_downloads(owner, stranger,
                                                                       maintainer, awaiting):
    url = f"/api/v1/experts/{awaiting.expert_id}/versions/"
    assert api_client_for(stranger).get(url).json() == []
    assert len(api_client_for(owner).get(url).json()) == 1
    dl = f"{url}1/download/"
    assert api_client_for(stranger).get(dl).status_code == 404
    services.expert_version_review(user=maintainer, version=awaiting, action="approve")
    response = api_client_for(stranger).get(dl)
    assert response.status_code == 200
    assert b"".join(response.streaming_content)[:8] == awaiting.weights.open("rb").read(8)
    manifest = api_client_for(None).get(dl + "?file=manifest")
    assert json.loads(b"".join(manifest.streaming_content))["domain"] == "news"
    awaiting.refresh_from_db()
    assert awaiting.download_count == 2


# Requests and leaderboards ---------------------------------------------------------------

def test_it_closes_a_request_when_an_answer_is_approved(owner, stranger, maintainer, expert,
                                                        artifact):
    posted = api_client_for(stranger).post(
        "/api/v1/requests/", {"title": "Need a news topic expert", "domain": "news",
                              "target_metric": "accuracy >= 0.9"}, format="json")
    assert posted.status_code == 201
    request_id = posted.json()["id"]
    answer = upload(api_client_for(owner), expert.pk, *artifact, answers_request=request_id)
    assert answer.status_code == 201
    version = ExpertVersion.objects.get()
    ExpertVersion.objects.filter(pk=version.pk).update(status="awaiting_review")
    services.expert_version_review(user=maintainer, version=version, action="approve")
    body = api_client_for(None).get(f"/api/v1/requests/{request_id}/").json()
    assert body["status"] == "closed" and body["closed_by"] == version.pk
    assert body["answers"][0]["version_id"] == version.pk
    assert ExpertRequest.objects.get().status == "closed"


def test_it_refuses_to_answer_a_request_of_another_domain(owner, stranger, expert, artifact,
                                                          media_root):
    """The upload form offers only requests of the expert's domain; the API holds the same."""
    spam = Domain.objects.create(name="spam", labels=["ham", "spam"])
    req = services.request_create(user=stranger, title="Need a spam filter", domain=spam)
    answer = upload(api_client_for(owner), expert.pk, *artifact, answers_request=req.pk)
    assert answer.status_code == 400, answer.content
    error = answer.json()["error"]
    assert error["code"] == "invalid"
    assert "request" in error["message"] and "'spam'" in error["message"]
    assert "'news'" in error["message"]
    assert not ExpertVersion.objects.exists() and not media_files(media_root)


def test_it_lets_only_the_author_or_a_maintainer_close_a_request(owner, stranger, maintainer):
    req = services.request_create(user=stranger, title="Want a legal expert")
    url = f"/api/v1/requests/{req.pk}/close/"
    assert api_client_for(None).post(url).status_code == 401
    assert api_client_for(owner).post(url).status_code == 403
    assert api_client_for(stranger).post(url).json()["status"] == "closed"


def test_it_ranks_approved_versions_on_the_domain_leaderboard(owner, stranger, maintainer, news,
                                                               tmp_path):
    scores = {owner: 0.8, stranger: 0.9}
    for i, (user, acc) in enumerate(scores.items()):
        exp = Expert.objects.create(owner=user, domain=news, name=f"e{i}")
        m, w = make_artifact(tmp_path / str(i), seed=i)
        services.expert_version_upload(
            user=user, expert=exp, manifest=SimpleUploadedFile("m.json", m.read_bytes()),
            weights=SimpleUploadedFile("w.safetensors", w.read_bytes()))
        version = ExpertVersion.objects.get(expert=exp)
        ExpertVersion.objects.filter(pk=version.pk).update(
            status="awaiting_review", metrics={"test_accuracy": acc, "test_macro_f1": acc})
        services.expert_version_review(user=maintainer, version=version, action="approve")
    leaderboards_refresh()
    rows = api_client_for(None).get("/api/v1/leaderboards/domains/news/").json()["results"]
    assert [r["contributor"] for r in rows] == ["mallory", "alice"]
    assert [r["rank"] for r in rows] == [1, 2]
    assert rows[0]["accuracy"] == 0.9
    assert rows[0]["version"]["url"].startswith("/experts/")
    assert api_client_for(None).get("/api/v1/leaderboards/contributors/").json()["results"] == []


def test_it_filters_the_expert_list(owner, stranger, news):
    spam = Domain.objects.create(name="spam", labels=["ham", "spam"])
    Expert.objects.create(owner=owner, domain=news, name="topic-mlp", description="news topics")
    Expert.objects.create(owner=stranger, domain=spam, name="sms-filter")
    client = api_client_for(None)

    def names(query):
        return [e["name"] for e in client.get(f"/api/v1/experts/?{query}").json()["results"]]

    assert names("domain=spam") == ["sms-filter"]
    assert names("owner=alice") == ["topic-mlp"]
    assert names("q=topics") == ["topic-mlp"]
    assert sorted(names("")) == ["sms-filter", "topic-mlp"]
