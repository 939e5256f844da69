"""Dashboards render their charts from a report; the index shows production and the jobs."""
from __future__ import annotations

import re

from django.utils import timezone

from gating.models import GatingMember, GatingVersion, Promotion
from gating.views import dashboard_charts
from tests.gating.conftest import shared_domain
from tests.helpers import make_expert, make_version
from training.models import Job


def report_for(keys: list[str], accuracy: float) -> dict:
    return {
        "summary": {"accuracy": accuracy, "macro_f1": accuracy - 0.1},
        "domains": {"news": {"accuracy": accuracy, "macro_f1": 0.5},
                    "spam": {"accuracy": accuracy, "macro_f1": 0.5}},
        "eval_split": {"news": "test", "spam": "test"}, "n_eval": {"news": 60, "spam": 60},
        "routing": {"accuracy": 0.9, "entropy": 0.4, "normalized_entropy": 0.58,
                    "utilization": 0.97, "dead_experts": [keys[1]],
                    "load": {keys[0]: 0.6, keys[1]: 0.4}},
        "unregularized": {"routing": {"accuracy": 0.8, "entropy": 0.2,
                                      "normalized_entropy": 0.29, "utilization": 0.7,
                                      "load": {keys[0]: 0.9, keys[1]: 0.1}},
                          "domains": {"news": {"accuracy": 0.5}, "spam": {"accuracy": 0.5}}},
        "routing_matrix": {"news": {keys[0]: 0.9, keys[1]: 0.1},
                           "spam": {keys[0]: 0.2, keys[1]: 0.8}},
        "credit": {keys[0]: 0.3, keys[1]: 0.2},
        "accuracy_without": {keys[0]: 0.4, keys[1]: 0.5},
        "compute": {"dense_flops_per_input": 2e6, "routed_flops_per_input": 1.5e6,
                    "trunk_flops_per_input": 1e6, "reduction": 0.25},
    }


def make_evaluated(number: int, versions, accuracy: float) -> GatingVersion:
    keys = [str(v.pk) for v in versions]
    curve = [{"epoch": e, "train_total": 1 / e, "train_nll": 0.9 / e, "dev_nll": 1.1 / e,
              "dev_accuracy": 0.5 + e / 100} for e in range(1, 6)]
    version = GatingVersion.objects.create(
        number=number, status=GatingVersion.Status.EVALUATED, report=report_for(keys, accuracy),
        training_curves={"regularized": curve, "unregularized": curve},
        params={"top_k": 1},
    )
    for i, v in enumerate(versions):
        GatingMember.objects.create(version=version, expert_version=v, position=i)
    return version


def test_it_draws_every_chart_of_a_version_dashboard(client, owner, maintainer):
    versions = [make_version(make_expert(owner, shared_domain(d))) for d in ("news", "spam")]
    old = make_evaluated(1, versions, 0.6)
    Promotion.objects.create(version=old, promoted_by=maintainer)
    new = make_evaluated(2, versions, 0.8)
    charts = dashboard_charts(new, old)
    assert set(charts) == {"load", "health", "accuracy", "heatmap", "loss", "dev_accuracy"}
    assert "even share" in charts["load"] and "unregularised" in charts["load"]
    assert "v1 (production before)" in charts["accuracy"]

    client.force_login(maintainer)
    page = client.get(f"/gating/{new.pk}/").content.decode()
    assert page.count("<svg") == 6
    assert "Promote to production" in page
    assert "Dead experts" in page and versions[1].label in page
    assert "0.3000" in page  # leave-one-out credit of the first expert


def test_it_escapes_labels_inside_the_charts(owner):
    domain = shared_domain("news")
    versions = [make_version(make_expert(owner, domain, "<script>x</script>")),
                make_version(make_expert(owner, shared_domain("spam")))]
    svg = dashboard_charts(make_evaluated(1, versions, 0.5), None)["load"]
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_it_shows_production_and_the_jobs_overview_on_the_index(client, owner, maintainer):
    versions = [make_version(make_expert(owner, shared_domain(d))) for d in ("news", "spam")]
    version = make_evaluated(1, versions, 0.7)
    Promotion.objects.create(version=version, promoted_by=maintainer)
    Job.objects.create(kind=Job.Kind.TRAIN_GATING, status=Job.Status.RUNNING)
    Job.objects.create(kind=Job.Kind.EVALUATE, status=Job.Status.FAILED,
                       finished_at=timezone.now(), error="ValueError: broken split")
    Job.objects.create(kind=Job.Kind.EVALUATE)
    page = client.get("/gating/").content.decode()
    assert "gating v1</a>" in page and "promoted by maya" in page
    assert "ValueError: broken split" not in page  # jobs: their starters and maintainers
    overview = [int(x) for x in re.findall(r'<div class="stat"><b>(\d+)</b>', page)]
    assert overview == [1, 1, 1]
    assert "Train a gating model" not in page  # anonymous
    client.force_login(maintainer)
    page = client.get("/gating/dashboard/").content.decode()
    assert "Train a gating model" in page and "Roll back production" in page
    assert "ValueError: broken split" in page


def test_it_lets_a_maintainer_start_training_from_the_form(client, owner, maintainer):
    for d in ("news", "spam"):
        make_version(make_expert(owner, shared_domain(d)))
    # A deleted version leaves the primary key ahead of the version number.
    GatingVersion.objects.create(number=99).delete()
    client.force_login(maintainer)
    response = client.post("/gating/train/", {"top_k": "2", "epochs": "3"})
    job = Job.objects.get(kind=Job.Kind.TRAIN_GATING)
    flashed = [str(m) for m in response.wsgi_request._messages]
    assert flashed == [f"Training gating v1 (job {job.pk}) queued."]
    assert response.status_code == 302 and response.url == f"/jobs/{job.pk}/"
    assert GatingVersion.objects.get().params == {"top_k": 2, "epochs": 3}
    response = client.post("/gating/train/", {"top_k": "9"}, follow=True)
    assert "top_k must be an integer in 1..64" not in response.content.decode()
    assert "top_k is 9 but only 2 experts" in response.content.decode()
    assert GatingVersion.objects.count() == 1


def test_it_shows_the_n_behind_every_summary_accuracy(client, owner, maintainer):
    versions = [make_version(make_expert(owner, shared_domain(d))) for d in ("news", "spam")]
    version = make_evaluated(1, versions, 0.7)
    Promotion.objects.create(version=version, promoted_by=maintainer)
    assert version.eval_n == 120  # 60 news + 60 spam rows
    assert "(n = 120)" in client.get("/gating/").content.decode()
    assert "n = 120" in client.get(f"/gating/{version.pk}/").content.decode()
    assert "n = 120 test rows" in client.get("/").content.decode()
    GatingVersion.objects.filter(pk=version.pk).update(report={"summary": {"accuracy": 0.7}})
    version.refresh_from_db()
    assert version.eval_n is None  # an old report without counts shows no made-up n
    assert "n = " not in client.get("/").content.decode()
