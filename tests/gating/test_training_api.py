"""Starting gating training: who may, and every refusal leaves nothing behind."""
from __future__ import annotations

import pytest

from experts.models import DataSplit
from gating.models import GatingMember, GatingVersion
from gating.services import gating_train_start
from moecollab_site.errors import DomainError
from tests.gating.conftest import shared_domain
from tests.helpers import api_client_for, make_expert, make_version
from training.models import Job

URL = "/api/v1/gating/"


def nothing_created():
    return (GatingVersion.objects.count(), GatingMember.objects.count(),
            Job.objects.count()) == (0, 0, 0)


def test_it_lets_a_maintainer_start_training_on_all_approved_experts(
        maintainer, owner, make_gating_setup):
    versions = make_gating_setup(owner)
    response = api_client_for(maintainer).post(URL, {"params": {"top_k": 2, "epochs": 5}},
                                               format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["job"]["kind"] == "train_gating" and body["job"]["queue"] == "gpu"
    assert body["version"]["status"] == "training"
    version = GatingVersion.objects.get(pk=body["version"]["id"])
    assert version.params == {"top_k": 2, "epochs": 5}
    assert [m.expert_version_id for m in version.members_in_order()] == [
        v.pk for v in sorted(versions, key=lambda v: v.expert.domain.name)]
    assert version.train_job.params == {"gating_version_id": version.pk}


def test_it_takes_the_mix_of_the_served_model(maintainer, owner, make_gating_setup):
    make_gating_setup(owner)
    response = api_client_for(maintainer).post(URL, {"params": {"mix": "domain"}},
                                               format="json")
    assert response.status_code == 201, response.content
    version = GatingVersion.objects.get(pk=response.json()["version"]["id"])
    assert version.params == {"mix": "domain"}


def test_it_trains_a_chosen_subset_in_the_given_order(maintainer, owner, make_gating_setup):
    versions = make_gating_setup(owner)
    ids = [versions[2].pk, versions[0].pk]
    response = api_client_for(maintainer).post(URL, {"expert_version_ids": ids}, format="json")
    assert response.status_code == 201, response.content
    assert [e["expert_version_id"] for e in response.json()["version"]["experts"]] == ids


@pytest.mark.parametrize("who", ["anonymous", "contributor"])
def test_it_refuses_training_to_non_maintainers(who, owner, make_gating_setup):
    make_gating_setup(owner)
    client = api_client_for(None if who == "anonymous" else owner)
    response = client.post(URL, {}, format="json")
    assert response.status_code == (401 if who == "anonymous" else 403)
    assert response.json()["error"]["code"] == (
        "not_authenticated" if who == "anonymous" else "forbidden")
    assert nothing_created()


def test_it_refuses_non_maintainers_with_the_one_not_allowed_error(owner, make_gating_setup):
    # The service's own check (the HTML form reaches it too), with the experts' code and status.
    make_gating_setup(owner)
    with pytest.raises(DomainError) as refused:
        gating_train_start(user=owner)
    assert (refused.value.code, refused.value.status_code) == ("forbidden", 403)
    assert refused.value.message == "only maintainers can train gating models"
    assert nothing_created()


def test_it_lets_anyone_read_the_list_and_detail(owner, maintainer, make_gating_setup):
    make_gating_setup(owner)
    api_client_for(maintainer).post(URL, {}, format="json")
    version = GatingVersion.objects.get()
    for client in (api_client_for(None), api_client_for(owner)):
        assert client.get(URL).json()["results"][0]["number"] == 1
        detail = client.get(f"{URL}{version.pk}/").json()
        assert detail["report"] == {} and detail["status"] == "training"


def test_it_refuses_when_there_are_no_approved_experts(maintainer, owner):
    make_version(make_expert(owner, shared_domain("news")), status="awaiting_review")
    response = api_client_for(maintainer).post(URL, {}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_experts"
    assert "no approved experts" in response.json()["error"]["message"]
    assert nothing_created()


def test_it_refuses_a_single_expert(maintainer, owner):
    make_version(make_expert(owner, shared_domain("news")))
    response = api_client_for(maintainer).post(URL, {}, format="json")
    assert response.status_code == 400
    assert "at least 2 experts" in response.json()["error"]["message"]
    assert nothing_created()


def test_it_refuses_experts_on_different_backbones(maintainer, owner):
    make_version(make_expert(owner, shared_domain("news")), fingerprint="a" * 64)
    make_version(make_expert(owner, shared_domain("spam")), fingerprint="b" * 64)
    response = api_client_for(maintainer).post(URL, {}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "mixed_backbones" and "different backbones" in error["message"]
    assert nothing_created()


def test_it_combines_experts_reading_different_layers(maintainer, owner):
    # One trunk serves every split layer: "all approved" over mixed kinds is not refused.
    make_version(make_expert(owner, shared_domain("news")), split_layer=6)
    make_version(make_expert(owner, shared_domain("spam")), split_layer=4)
    response = api_client_for(maintainer).post(URL, {}, format="json")
    assert response.status_code == 201, response.json()
    assert GatingVersion.objects.get().members.count() == 2


def test_it_refuses_a_domain_without_a_train_split(maintainer, owner):
    make_version(make_expert(owner, shared_domain("news")))
    make_version(make_expert(owner, shared_domain("spam", kinds=("dev", "test"))))
    response = api_client_for(maintainer).post(URL, {}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("domain(s) spam have no train split")
    assert nothing_created()


@pytest.mark.parametrize("body, fragment", [
    ({"params": {"top_k": 0}}, "top_k must be an integer in 1..64"),
    ({"params": {"top_k": 3.5}}, "top_k must be an integer"),
    ({"params": {"lambda_h": -1}}, "lambda_h must be a number in 0..10"),
    ({"params": {"lambda_h": "lots"}}, "lambda_h must be a number"),
    ({"params": {"warp": 9}}, "unknown parameter(s) warp"),
    ({"params": {"mix": "soft"}}, "mix must be one of top_k, domain, dense, got 'soft'"),
    ({"params": {"mix": 2}}, "mix must be one of top_k, domain, dense, got 2"),
    ({"params": {"top_k": 4}}, "top_k is 4 but only 3 experts"),
    ({"expert_version_ids": [999]}, "expert version(s) 999 do not exist"),
    ({"expert_version_ids": "all"}, "expert_version_ids"),
])
def test_it_refuses_bad_input_with_a_clear_message(body, fragment, maintainer, owner,
                                                   make_gating_setup):
    make_gating_setup(owner)
    response = api_client_for(maintainer).post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert fragment in response.json()["error"]["message"]
    assert nothing_created()


def test_it_refuses_a_version_that_is_not_approved(maintainer, owner, make_gating_setup):
    versions = make_gating_setup(owner)
    versions[1].status = "rejected"
    versions[1].save(update_fields=["status"])
    ids = [v.pk for v in versions]
    response = api_client_for(maintainer).post(URL, {"expert_version_ids": ids}, format="json")
    assert response.status_code == 400
    assert "not approved" in response.json()["error"]["message"]
    assert "rejected" in response.json()["error"]["message"]
    assert nothing_created()


def test_it_numbers_versions_in_sequence(maintainer, owner, make_gating_setup):
    make_gating_setup(owner)
    client = api_client_for(maintainer)
    # Two different requests (an identical second one is refused: test_duplicate_training.py).
    numbers = [client.post(URL, {"params": {"seed": seed}}, format="json").json()["version"][
        "number"] for seed in range(2)]
    assert numbers == [1, 2]
    assert DataSplit.objects.filter(kind="train").count() == 3
