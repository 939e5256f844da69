"""A second identical gating training (same expert versions, same settings, same backbone) is
refused with 409 "duplicate" naming and linking the existing version, as an expert upload with
identical weights is; nothing new is created. A different request, or a retry after a
failure, trains."""
from __future__ import annotations

import threading
import time

from django.db import connections

from gating import services
from gating.models import GatingMember, GatingVersion
from tests.helpers import api_client_for
from training.models import Job

URL = "/api/v1/gating/"


def _counts():
    return GatingVersion.objects.count(), GatingMember.objects.count(), Job.objects.count()


def test_it_refuses_an_identical_training_and_names_the_existing_version(
        maintainer, owner, make_gating_setup):
    make_gating_setup(owner)
    client = api_client_for(maintainer)
    first = client.post(URL, {"params": {"top_k": 2, "epochs": 5}}, format="json")
    assert first.status_code == 201, first.content
    existing = GatingVersion.objects.get()
    before = _counts()

    again = client.post(URL, {"params": {"epochs": 5, "top_k": 2}}, format="json")

    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "duplicate"
    assert error["message"].startswith(
        "an identical gating model exists: gating v1 (still training) combines the same 3 "
        "expert versions with the same settings on the same backbone, so nothing new was "
        "started")
    assert f"See it at /gating/{existing.pk}/" in error["message"]
    assert _counts() == before


def test_leaving_out_a_setting_is_the_same_as_sending_its_default(
        maintainer, owner, make_gating_setup):
    versions = make_gating_setup(owner)
    client = api_client_for(maintainer)
    ids = [v.pk for v in versions]
    assert client.post(URL, {"expert_version_ids": ids}, format="json").status_code == 201
    # The same set in another order, with the defaults spelled out (top_k 1, seed 0, lr 0.01).
    again = client.post(URL, {"expert_version_ids": ids[::-1],
                              "params": {"top_k": 1, "seed": 0, "lr": 0.01}}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate"


def test_it_compares_a_trained_version_by_the_settings_it_ran_with(
        maintainer, owner, make_gating_setup):
    make_gating_setup(owner)
    client = api_client_for(maintainer)
    assert client.post(URL, {"params": {"epochs": 5}}, format="json").status_code == 201
    version = GatingVersion.objects.get()
    # Training stores the full config it ran with (defaults included, and more fields).
    GatingVersion.objects.filter(pk=version.pk).update(
        status=GatingVersion.Status.EVALUATED,
        params={"top_k": 1, "epochs": 5, "lr": 0.01, "seed": 0, "router_layers": [6, 0],
                "device": "cpu", "dev_fraction": 0.1})
    again = client.post(URL, {"params": {"epochs": 5}}, format="json")
    assert again.status_code == 409
    assert "gating v1 (trained and evaluated)" in again.json()["error"]["message"]


def test_a_different_setting_or_expert_set_trains_a_new_version(
        maintainer, owner, make_gating_setup):
    versions = make_gating_setup(owner)
    client = api_client_for(maintainer)
    assert client.post(URL, {"params": {"epochs": 5}}, format="json").status_code == 201
    assert client.post(URL, {"params": {"epochs": 5, "seed": 1}},
                       format="json").status_code == 201
    subset = [versions[0].pk, versions[1].pk]
    assert client.post(URL, {"expert_version_ids": subset, "params": {"epochs": 5}},
                       format="json").status_code == 201
    assert GatingVersion.objects.count() == 3


def test_a_failed_training_can_be_started_again(maintainer, owner, make_gating_setup):
    make_gating_setup(owner)
    client = api_client_for(maintainer)
    assert client.post(URL, {}, format="json").status_code == 201
    failed = GatingVersion.objects.get()
    failed.mark_failed("the worker process running this job died: signal 9")
    assert client.post(URL, {}, format="json").status_code == 201
    # A training whose job died (the version never heard) does not count either.
    newer = GatingVersion.objects.exclude(pk=failed.pk).get()
    Job.objects.filter(pk=newer.train_job_id).update(status=Job.Status.FAILED)
    assert client.post(URL, {}, format="json").status_code == 201
    assert GatingVersion.objects.count() == 3


def test_the_form_takes_the_maintainer_to_the_existing_version_saying_so(
        client, maintainer, owner, make_gating_setup):
    make_gating_setup(owner)
    client.force_login(maintainer)
    first = client.post("/gating/train/", {"epochs": "3"})
    existing = GatingVersion.objects.get()
    assert first.status_code == 302
    before = _counts()

    again = client.post("/gating/train/", {"epochs": "3"})

    assert again.status_code == 302 and again["Location"] == f"/gating/{existing.pk}/"
    assert _counts() == before
    page = client.get(again["Location"]).content.decode()
    assert "an identical gating model exists: gating v1 (still training)" in page


def test_two_identical_trainings_started_at_once_make_one_version(
        transactional_db, maintainer, owner, make_gating_setup, monkeypatch):
    """The identity check and the insert are one locked step: with time between them (a
    slow check here), the second of two simultaneous identical starts still sees the first."""
    make_gating_setup(owner)
    real_check = services.gating_version_identical

    def slow_check(**kwargs):
        found = real_check(**kwargs)
        time.sleep(0.5)  # the window in which an unlocked second start would also pass
        return found

    monkeypatch.setattr(services, "gating_version_identical", slow_check)
    barrier, codes = threading.Barrier(2), []

    def start() -> None:
        try:
            barrier.wait(10)
            response = api_client_for(maintainer).post(URL, {"params": {"epochs": 5}},
                                                       format="json")
            codes.append(response.status_code)
        finally:
            connections.close_all()  # this thread's own connection

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [201, 409]
    assert GatingVersion.objects.count() == 1
