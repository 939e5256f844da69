"""Promotion and rollback: maintainers only, one production version, history, leaderboards."""
from __future__ import annotations

import pytest

from gating import selectors
from gating.models import GatingVersion, Promotion
from tests.helpers import api_client_for
from training.models import Job


def evaluated_version(number: int, *, user=None) -> GatingVersion:
    return GatingVersion.objects.create(
        number=number, status=GatingVersion.Status.EVALUATED, trained_by=user,
        report={"summary": {"accuracy": 0.5 + number / 100, "macro_f1": 0.5},
                "domains": {"news": {"accuracy": 0.6, "macro_f1": 0.5}}},
    )


def promote(client, version):
    return client.post(f"/api/v1/gating/{version.pk}/promote/")


def refreshes() -> int:
    return Job.objects.filter(kind=Job.Kind.REFRESH_LEADERBOARDS).count()


@pytest.mark.parametrize("who, code", [("anonymous", 401), ("contributor", 403)])
def test_it_refuses_promotion_and_rollback_to_non_maintainers(who, code, owner, maintainer):
    version = evaluated_version(1)
    client = api_client_for(None if who == "anonymous" else owner)
    assert promote(client, version).status_code == code
    api_client_for(maintainer).post(f"/api/v1/gating/{version.pk}/promote/")
    response = client.post("/api/v1/gating/rollback/")
    assert response.status_code == code
    assert response.json()["error"]["message"]
    assert response.json()["error"]["code"] == {401: "not_authenticated", 403: "forbidden"}[code]
    assert selectors.production_version_id() == version.pk
    assert Promotion.objects.count() == 1


def test_it_promotes_then_rolls_back_to_the_previous_version(maintainer):
    client = api_client_for(maintainer)
    v1, v2 = evaluated_version(1), evaluated_version(2)
    assert promote(client, v1).status_code == 201
    response = promote(client, v2)
    assert response.status_code == 201, response.content
    assert response.json()["version"] == 2
    assert selectors.production_version_id() == v2.pk
    assert selectors.previous_production(version=v2) == v1
    assert refreshes() == 2

    response = client.post("/api/v1/gating/rollback/")
    assert response.status_code == 200
    assert response.json()["production"]["version"] == 1
    assert selectors.production_version_id() == v1.pk
    rolled = Promotion.objects.get(version=v2)
    assert rolled.rolled_back and rolled.rolled_back_by == maintainer
    assert refreshes() == 3

    assert client.post("/api/v1/gating/rollback/").json() == {"production": None}
    assert selectors.production_version_id() is None
    response = client.post("/api/v1/gating/rollback/")
    assert response.status_code == 409
    assert "nothing to roll back" in response.json()["error"]["message"]
    assert Promotion.objects.count() == 2  # history kept


def test_it_refuses_to_promote_a_version_that_is_not_evaluated(maintainer):
    version = GatingVersion.objects.create(number=1, status=GatingVersion.Status.TRAINED)
    response = promote(api_client_for(maintainer), version)
    assert response.status_code == 409
    assert "only an evaluated version can be promoted" in response.json()["error"]["message"]
    assert Promotion.objects.count() == 0 and refreshes() == 0


def test_it_refuses_to_promote_the_production_version_twice(maintainer):
    client = api_client_for(maintainer)
    version = evaluated_version(1)
    promote(client, version)
    response = promote(client, version)
    assert response.status_code == 409
    assert "already in production" in response.json()["error"]["message"]
    assert Promotion.objects.count() == 1


def test_it_answers_404_for_an_unknown_version(maintainer):
    response = api_client_for(maintainer).post("/api/v1/gating/999/promote/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("who", ["anonymous", "contributor", "maintainer"])
def test_it_guards_the_browser_forms_like_the_api(who, client, owner, maintainer):
    version = evaluated_version(1)
    user = {"anonymous": None, "contributor": owner, "maintainer": maintainer}[who]
    if user is not None:
        client.force_login(user)
    response = client.post(f"/gating/{version.pk}/promote/")
    expected_production = version.pk if who == "maintainer" else None
    assert selectors.production_version_id() == expected_production
    if who == "maintainer":
        assert response.status_code == 302
        response = client.post("/gating/rollback/")
        assert response.status_code == 302 and selectors.production_version_id() is None
    else:
        assert response.status_code == 403
        assert client.post("/gating/rollback/").status_code == 403
        assert client.post("/gating/train/").status_code == 403
