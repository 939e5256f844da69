"""Promotion with eyes open: candidate vs production, confirmation of a worse model."""
from __future__ import annotations

from gating import selectors
from gating.models import GatingVersion, Promotion
from tests.helpers import api_client_for


def version_with_hits(number: int, hits: str, *, digest: str = "rows-1") -> GatingVersion:
    accuracy = hits.count("1") / len(hits)
    return GatingVersion.objects.create(
        number=number, status=GatingVersion.Status.EVALUATED,
        report={"summary": {"accuracy": accuracy, "macro_f1": accuracy},
                "domains": {"news": {"accuracy": accuracy, "macro_f1": accuracy}},
                "row_hits": {"news": hits}, "rows_digest": {"news": digest}},
    )


def test_it_requires_confirmation_to_promote_a_worse_version_through_the_api(maintainer):
    client = api_client_for(maintainer)
    good = version_with_hits(1, "1111111100")
    worse = version_with_hits(2, "1111110000")
    assert client.post(f"/api/v1/gating/{good.pk}/promote/").status_code == 201

    shown = client.get(f"/api/v1/gating/{worse.pk}/promote/").json()
    assert shown["requires_confirmation"] is True
    summary = shown["comparison"]["summary"]
    assert summary["paired"] and round(summary["difference"], 4) == -0.2
    assert summary["interval"][0] < -0.2 < summary["interval"][1]

    refused = client.post(f"/api/v1/gating/{worse.pk}/promote/", {}, format="json")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "worse_than_production"
    assert "0.6000" in refused.json()["error"]["message"]
    assert selectors.production_version_id() == good.pk

    bad = client.post(f"/api/v1/gating/{worse.pk}/promote/", {"confirm_worse": "maybe"},
                      format="json")
    assert bad.status_code == 400

    done = client.post(f"/api/v1/gating/{worse.pk}/promote/", {"confirm_worse": True},
                       format="json")
    assert done.status_code == 201, done.content
    assert done.json()["confirmed_worse_by"] == maintainer.username
    assert selectors.production_version_id() == worse.pk
    assert Promotion.objects.get(version=good).confirmed_worse_by is None


def test_it_promotes_a_better_version_without_confirmation(maintainer):
    client = api_client_for(maintainer)
    old = version_with_hits(1, "1111110000")
    new = version_with_hits(2, "1111111100", digest="other-rows")
    client.post(f"/api/v1/gating/{old.pk}/promote/")
    shown = client.get(f"/api/v1/gating/{new.pk}/promote/").json()
    assert shown["requires_confirmation"] is False
    assert shown["comparison"]["summary"]["paired"] is False  # not the same rows
    response = client.post(f"/api/v1/gating/{new.pk}/promote/")
    assert response.status_code == 201
    assert response.json()["confirmed_worse_by"] is None


def test_it_asks_for_the_checkbox_on_the_promote_page(client, maintainer):
    client.force_login(maintainer)
    good = version_with_hits(1, "1111111100")
    worse = version_with_hits(2, "1111110000")
    client.post(f"/gating/{good.pk}/promote/")
    page = client.get(f"/gating/{worse.pk}/").content.decode()
    assert "Against production (v1)" in page
    assert 'name="confirm_worse"' in page and "-0.2000" in page

    client.post(f"/gating/{worse.pk}/promote/")
    assert selectors.production_version_id() == good.pk
    page = client.get(f"/gating/{worse.pk}/").content.decode()
    assert "confirm to promote a worse model" in page

    client.post(f"/gating/{worse.pk}/promote/", {"confirm_worse": "on"})
    assert selectors.production_version_id() == worse.pk
    assert Promotion.objects.get(version=worse).confirmed_worse_by == maintainer
    index = client.get("/gating/").content.decode()
    assert f"by {maintainer.username} (-0.2000)" in index


def test_it_shows_shapley_credit_and_wilson_intervals_on_the_dashboard(client, owner):
    from tests.gating.conftest import shared_domain
    from tests.gating.test_dashboard import make_evaluated
    from tests.helpers import make_expert, make_version

    versions = [make_version(make_expert(owner, shared_domain(d))) for d in ("news", "spam")]
    version = make_evaluated(1, versions, 0.75)
    keys = [str(v.pk) for v in versions]
    report = version.report
    report["shapley"] = {keys[0]: 0.41, keys[1]: 0.34}
    report["shapley_ci95"] = {keys[0]: [0.38, 0.44], keys[1]: [0.34, 0.34]}
    report["domains"]["news"]["interval"] = [0.627, 0.842]
    GatingVersion.objects.filter(pk=version.pk).update(report=report)
    page = client.get(f"/gating/{version.pk}/").content.decode()
    assert "Shapley credit" in page and "0.4100" in page and "[0.3800, 0.4400]" in page
    assert "exact" in page and "[0.627, 0.842]" in page
    assert "Load, no regularisers" in page and "0.900" in page
