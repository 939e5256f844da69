"""Version pages: upload (plain and with upload.js), training requests, checks, review actions."""
from __future__ import annotations

import json

import pytest

from experts import services
from experts.models import ExpertRequest, ExpertVersion, Notification, ReviewComment
from tests.experts.pages_support import dataset_file, real_artifact, upload_files
from tests.helpers import make_domain, make_expert, make_version
from training.models import Job

S = ExpertVersion.Status
XHR = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest", "HTTP_ACCEPT": "application/json"}


@pytest.fixture(scope="module")
def artifact():
    """A toy-domain artifact, for the toy expert below (not conftest's news one)."""
    return real_artifact()


@pytest.fixture
def expert(owner, maintainer):
    """The page tests' expert: alice's "sharp" on the toy domain (not conftest's news one)."""
    return make_expert(owner, make_domain(created_by=maintainer), "sharp", license="MIT",
                       description="A sharp classifier")


def _stored_files(media_root) -> list:
    return [p for p in media_root.rglob("*") if p.is_file() and "datasets" not in p.parts]


def _body(response) -> str:
    return response.content.decode()


# Upload -------------------------------------------------------------------------------------


def test_it_uploads_a_real_artifact_from_the_form(client, owner, expert, artifact, media_root):
    client.force_login(owner)
    page = _body(client.get(f"/experts/{expert.pk}/upload/"))
    assert 'enctype="multipart/form-data"' in page and "csrfmiddlewaretoken" in page
    assert "/static/js/upload.js" in page and 'accept=".safetensors"' in page
    response = client.post(f"/experts/{expert.pk}/upload/", upload_files(*artifact))
    version = ExpertVersion.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/experts/{expert.pk}/versions/1/"
    assert version.status == S.VALIDATING and version.kind == "head"
    job = Job.objects.get(kind=Job.Kind.VALIDATE_EXPERT)
    assert version.training_params["validation_job"] == job.pk
    assert len(_stored_files(media_root)) == 2
    body = _body(client.get(response["Location"]))
    assert "Validating" in body and "validation is queued" in body
    assert f'data-status-url="/jobs/{job.pk}/status.json"' in body
    assert "/static/js/version.js" in body and f'href="/jobs/{job.pk}/"' in body
    assert body.count('aria-label="passed">✓') == len(version.checks) > 0
    assert "sentence-transformers/all-MiniLM-L6-v2" in body


def test_it_answers_upload_js_with_json(client, owner, expert, artifact):
    client.force_login(owner)
    response = client.post(f"/experts/{expert.pk}/upload/", upload_files(*artifact), **XHR)
    assert response.status_code == 201
    assert response.json() == {"redirect": f"/experts/{expert.pk}/versions/1/", "number": 1}
    again = client.post(f"/experts/{expert.pk}/upload/", upload_files(*artifact), **XHR)
    assert again.status_code == 409
    assert again.json()["error"]["message"].startswith("duplicate weights: identical to "
                                                      "alice/sharp v1")
    missing = client.post(f"/experts/{expert.pk}/upload/", {}, **XHR)
    assert missing.status_code == 400 and "choose manifest.json and weights.safetensors, or " \
        "a LoRA adapter's two files" in missing.json()["error"]["message"]
    assert ExpertVersion.objects.count() == 1


def test_it_refuses_uploads_from_anyone_but_the_owner(client, expert, stranger, maintainer,
                                                      artifact, media_root):
    url = f"/experts/{expert.pk}/upload/"
    response = client.post(url, upload_files(*artifact))
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    for user in (stranger, maintainer):
        client.force_login(user)
        assert client.get(url).status_code == 403
        response = client.post(url, upload_files(*artifact))
        assert response.status_code == 403
        assert f"only the owner of expert {expert} can upload versions of it" in _body(response)
        xhr = client.post(url, upload_files(*artifact), **XHR)
        assert xhr.status_code == 403 and xhr.json()["error"]["code"] == "forbidden"
    assert not ExpertVersion.objects.exists() and not Job.objects.exists()
    assert _stored_files(media_root) == []


def test_it_shows_why_a_malformed_upload_was_refused(client, owner, expert, artifact, media_root):
    manifest, weights = artifact
    client.force_login(owner)
    url = f"/experts/{expert.pk}/upload/"

    not_safetensors = client.post(url, upload_files(manifest, b"\x80\x02pickle-bytes!" * 4))
    assert not_safetensors.status_code == 400
    assert "safetensors header: this is not a safetensors file: it is a Python pickle" in _body(
        not_safetensors)

    bad = json.loads(manifest)
    bad["domain"] = "news"
    wrong_domain = client.post(url, upload_files(json.dumps(bad).encode(), weights))
    assert wrong_domain.status_code == 400
    assert ("manifest domain &#x27;news&#x27; does not match the expert&#x27;s domain "
            "&#x27;toy&#x27;") in _body(wrong_domain)

    bad = json.loads(manifest)
    bad["backbone"]["fingerprint"] = "0" * 64
    wrong_backbone = client.post(url, upload_files(json.dumps(bad).encode(), weights))
    assert wrong_backbone.status_code == 400 and "backbone: " in _body(wrong_backbone)

    assert not ExpertVersion.objects.exists() and not Job.objects.exists()
    assert _stored_files(media_root) == []


def test_it_links_an_upload_to_the_request_it_answers(client, owner, stranger, expert,
                                                      artifact):
    req = services.request_create(user=stranger, title="Need toy", domain=expert.domain)
    client.force_login(owner)
    assert f"#{req.pk} Need toy" in _body(client.get(f"/experts/{expert.pk}/upload/"))
    client.post(f"/experts/{expert.pk}/upload/",
                {**upload_files(*artifact), "answers_request": str(req.pk)})
    assert ExpertVersion.objects.get().answers_request == req


# Training from a dataset --------------------------------------------------------------------


def test_it_queues_training_from_a_dataset(client, owner, expert):
    client.force_login(owner)
    assert 'name="kind"' in _body(client.get(f"/experts/{expert.pk}/train/"))
    rows = [("good", "pos"), ("bad", "neg"), ("great", "pos")]
    response = client.post(f"/experts/{expert.pk}/train/",
                           {"dataset": dataset_file(rows), "kind": "branch", "epochs": "3"})
    version = ExpertVersion.objects.get()
    assert response["Location"] == f"/experts/{expert.pk}/versions/1/"
    assert (version.status, version.kind, version.source) == (S.TRAINING, "branch", "platform")
    job = Job.objects.get(kind=Job.Kind.TRAIN_EXPERT)
    assert job.queue == "gpu" and version.training_params["epochs"] == 3
    body = _body(client.get(response["Location"]))
    assert f'href="/jobs/{job.pk}/">training #{job.pk}</a>' in body
    assert f'data-status-url="/jobs/{job.pk}/status.json"' in body and "Training" in body


def test_it_refuses_a_bad_training_dataset_with_its_line_number(client, owner, expert):
    client.force_login(owner)
    response = client.post(f"/experts/{expert.pk}/train/", {
        "dataset": dataset_file([("good", "pos"), ("", "neg")], name="mine.jsonl"),
        "kind": "head"})
    assert response.status_code == 400 and "mine.jsonl: line 2" in _body(response)
    one_label = client.post(f"/experts/{expert.pk}/train/", {
        "dataset": dataset_file([("good", "pos")]), "kind": "head"})
    assert "at least two different labels" in _body(one_label)
    too_long = client.post(f"/experts/{expert.pk}/train/", {
        "dataset": dataset_file([("a", "pos"), ("b", "neg")]), "kind": "head",
        "epochs": "500"})
    assert too_long.status_code == 400
    assert not ExpertVersion.objects.exists() and not Job.objects.exists()


def test_it_refuses_training_requests_from_anyone_but_the_owner(client, expert, stranger,
                                                                maintainer):
    url = f"/experts/{expert.pk}/train/"
    data = {"dataset": dataset_file([("a", "pos"), ("b", "neg")]), "kind": "head"}
    assert client.post(url, data)["Location"].startswith("/login/")
    for user in (stranger, maintainer):
        client.force_login(user)
        data["dataset"] = dataset_file([("a", "pos"), ("b", "neg")])
        assert client.get(url).status_code == 403
        assert client.post(url, data).status_code == 403
    assert not ExpertVersion.objects.exists()


# The version page and review ----------------------------------------------------------------


def test_it_shows_each_check_and_the_exact_failure(client, owner, expert):
    version = make_version(expert, status=S.INVALID)
    version.checks = [
        {"name": "manifest schema", "ok": True, "message": "ok", "where": "upload"},
        {"name": "loads and runs", "ok": False, "where": "worker",
         "message": "forward pass produced NaN logits"}]
    version.error = "loads and runs: forward pass produced NaN logits"
    version.save()
    client.force_login(owner)
    body = _body(client.get(f"/experts/{expert.pk}/versions/1/"))
    assert 'aria-label="passed">✓' in body and 'aria-label="failed">✗' in body
    assert "Why it failed:</strong> loads and runs: forward pass produced NaN logits" in body
    assert "validation job" in body and "version.js" not in body


def test_it_compares_a_version_with_the_domains_best(client, owner, stranger, expert,
                                                     maintainer):
    rival = make_expert(stranger, expert.domain, name="rival")
    make_version(rival, status=S.APPROVED, accuracy=0.9, macro_f1=0.8)
    make_version(expert, status=S.AWAITING_REVIEW, accuracy=0.85, macro_f1=0.85)
    client.force_login(maintainer)
    body = _body(client.get(f"/experts/{expert.pk}/versions/1/"))
    assert "mallory/rival v1" in body
    assert '<span class="worse">-0.050</span>' in body
    assert '<span class="better">+0.050</span>' in body


@pytest.mark.parametrize("action, start, end", [
    ("approve", S.AWAITING_REVIEW, S.APPROVED),
    ("request_changes", S.AWAITING_REVIEW, S.CHANGES_REQUESTED),
    ("reject", S.AWAITING_REVIEW, S.REJECTED),
    ("retire", S.APPROVED, S.RETIRED),
])
def test_it_lets_maintainers_review_and_notifies_the_owner(client, owner, maintainer, expert,
                                                           action, start, end):
    make_version(expert, status=start, accuracy=0.8)
    url = f"/experts/{expert.pk}/versions/1/"
    client.force_login(maintainer)
    page = _body(client.get(url))
    assert f'name="action" value="{action}"' in page
    response = client.post(url + "review/", {"action": action, "comment": "Looks solid"})
    assert response.status_code == 302 and response["Location"] == url
    version = ExpertVersion.objects.get()
    assert version.status == end and version.reviewed_by == maintainer
    note = Notification.objects.get(user=owner)
    assert note.link == url and "Looks solid" in note.message
    body = _body(client.get(url))
    assert "Looks solid" in body and version.get_status_display() in body
    # Rankings list approved versions only, so only approving or retiring refreshes them.
    refreshed = Job.objects.filter(kind=Job.Kind.REFRESH_LEADERBOARDS).exists()
    assert refreshed is (end in (S.APPROVED, S.RETIRED))


def test_it_refuses_an_impossible_transition_with_the_reason(client, maintainer, expert):
    make_version(expert, status=S.REJECTED)
    client.force_login(maintainer)
    response = client.post(f"/experts/{expert.pk}/versions/1/review/", {"action": "approve"})
    assert response.status_code == 409
    assert "cannot approve a version that is rejected" in _body(response)
    assert ExpertVersion.objects.get().status == S.REJECTED


def test_it_refuses_review_decisions_from_contributors(client, owner, stranger, expert):
    make_version(expert, status=S.AWAITING_REVIEW)
    make_version(expert, status=S.APPROVED)
    review = f"/experts/{expert.pk}/versions/%d/review/"
    response = client.post(review % 1, {"action": "approve"})
    assert response["Location"].startswith("/login/")
    client.force_login(owner)
    assert 'value="approve"' not in _body(client.get(f"/experts/{expert.pk}/versions/1/"))
    response = client.post(review % 1, {"action": "approve"})
    assert response.status_code == 403 and "only maintainers can review versions" in \
        _body(response)
    client.force_login(stranger)
    # An unpublished version does not exist for a stranger; a published one refuses them.
    assert client.post(review % 1, {"action": "approve"}).status_code == 404
    assert client.post(review % 2, {"action": "retire"}).status_code == 403
    assert client.post(review % 2, {"action": "comment", "comment": "hi"}).status_code == 403
    assert [v.status for v in ExpertVersion.objects.order_by("number")] == [
        S.AWAITING_REVIEW, S.APPROVED]
    assert not ReviewComment.objects.exists() and not Notification.objects.exists()


def test_it_keeps_a_comment_thread_between_owner_and_maintainers(client, owner, maintainer,
                                                                 stranger, expert):
    make_version(expert, status=S.AWAITING_REVIEW)
    url = f"/experts/{expert.pk}/versions/1/"
    client.force_login(owner)
    assert 'value="comment"' in _body(client.get(url))
    assert client.post(url + "review/", {"action": "comment", "comment": "Ready?"})[
        "Location"] == url
    empty = client.post(url + "review/", {"action": "comment", "comment": "   "})
    assert empty.status_code == 400 and "comment must not be empty" in _body(empty)
    client.force_login(maintainer)
    client.post(url + "review/", {"action": "comment", "comment": "Almost."})
    body = _body(client.get(url))
    assert body.index("Ready?") < body.index("Almost.")
    assert Notification.objects.get(user=owner).message.endswith("commented on Almost.")
    assert [c.body for c in ReviewComment.objects.all()] == ["Ready?", "Almost."]


def test_it_closes_the_answered_request_on_approval(client, owner, stranger, maintainer, expert):
    req = services.request_create(user=stranger, title="Need toy")
    version = make_version(expert, status=S.AWAITING_REVIEW)
    ExpertVersion.objects.filter(pk=version.pk).update(answers_request=req)
    client.force_login(maintainer)
    client.post(f"/experts/{expert.pk}/versions/1/review/", {"action": "approve"})
    req.refresh_from_db()
    assert req.status == ExpertRequest.Status.CLOSED and req.closed_by_id == version.pk
    body = _body(client.get(f"/experts/requests/{req.pk}/"))
    assert f'href="/experts/{expert.pk}/versions/1/">sharp v1</a>' in body
