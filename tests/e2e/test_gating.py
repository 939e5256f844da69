"""A maintainer trains a gating model from the gating pages on a real worker, watches the job
to 100%, promotes the model, reads its dashboard and asks the playground."""
from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from experts import services
from experts.models import Domain, ExpertVersion
from gating.models import GatingVersion
from moecollab_site.demo import SAMPLE_DATA_DIR
from tests.e2e.conftest import JOB_TIMEOUT_MS, Visitor, log_in
from tests.helpers import train_real_artifact, wait_for

pytestmark = pytest.mark.worker

DOMAINS = ("news", "spam")


def approved_experts(owner, maintainer, tmp_path) -> list[ExpertVersion]:
    """One small trained head expert per sample domain, uploaded, validated by the worker and
    approved, as the contribution test does through the pages."""
    versions = []
    for name in DOMAINS:
        domain = services.domain_import_folder(path=SAMPLE_DATA_DIR / name)
        folder = train_real_artifact(SAMPLE_DATA_DIR / name, tmp_path / f"artifact-{name}",
                                     cache_dir=tmp_path / "features")
        expert = services.expert_create(user=owner, domain=domain, name=f"{name}-head")
        versions.append(services.expert_version_upload(
            user=owner, expert=expert,
            manifest=SimpleUploadedFile("manifest.json", (folder / "manifest.json").read_bytes()),
            weights=SimpleUploadedFile("weights.safetensors",
                                       (folder / "weights.safetensors").read_bytes())))
    for version in versions:
        wait_for(lambda v=version: ExpertVersion.objects.get(pk=v.pk).status != "validating",
                 timeout=JOB_TIMEOUT_MS / 1000, what=f"validation of {version.label}")
        version.refresh_from_db()
        assert version.status == ExpertVersion.Status.AWAITING_REVIEW, version.error
        services.expert_version_review(user=maintainer, version=version, action="approve")
    return versions


def watch_job(v: Visitor, step: str) -> None:
    """On a job page: the bar fills by itself and the job ends succeeded at 100%."""
    page = v.page
    expect(page.locator("#job-status")).to_have_text(re.compile("running|succeeded"),
                                                      timeout=JOB_TIMEOUT_MS)
    v.snap(f"{step}-started")
    expect(page.locator("#job-percent")).to_have_text("100%", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#job-progress")).to_have_js_property("value", 1)
    expect(page.locator("#job-error")).to_be_hidden()
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()  # nothing left to cancel
    expect(page.locator("#job-log")).not_to_be_empty()
    v.snap(f"{step}-done")


def test_it_trains_promotes_and_serves_a_gating_model(
        visitor, celery_worker_process, owner, maintainer, tmp_path, fresh_serving):
    experts = approved_experts(owner, maintainer, tmp_path)

    maya = visitor("maya")
    log_in(maya, "maya", "pw-maya")
    page = maya.page
    page.locator(".mainnav").get_by_role("link", name="Gating models").click()
    expect(page.locator("main")).to_contain_text("No gating model is in production yet.")
    form = page.locator("form.train-form")
    for version in experts:
        form.locator("label", has_text=version.label).get_by_role("checkbox").check()
    form.get_by_label("epochs", exact=True).fill("8")
    form.get_by_label("seed", exact=True).fill("0")
    form.get_by_label("mix").select_option("domain")  # one expert per domain: top-1 routing
    maya.snap("gating-train-form")
    form.get_by_role("button", name="Start training").click()

    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    expect(page.get_by_role("heading", name=re.compile("Train gating"))).to_be_visible()
    expect(page.locator(".messages")).to_contain_text("Training gating v1")
    watch_job(maya, "train-job")

    # The worker queued the evaluation on the private test splits; follow it to the end.
    gating = GatingVersion.objects.get()
    assert (gating.params["epochs"], gating.params["mix"]) == (8, "domain")
    maya.go(f"/gating/{gating.pk}/", "gating-trained")
    page.get_by_role("link", name="evaluation job").click()
    watch_job(maya, "eval-job")

    page.locator(".mainnav").get_by_role("link", name="Gating models").click()
    row = page.locator("tr").filter(has=page.get_by_role("link", name="v1", exact=True))
    expect(row).to_contain_text("evaluated")
    maya.snap("gating-index-evaluated")
    page.get_by_role("link", name="v1", exact=True).click()
    expect(page.locator("h1 .status").first).to_have_text("evaluated")
    maya.snap("gating-evaluated")
    page.get_by_role("button", name="Promote to production").click()
    expect(page.locator(".messages")).to_contain_text("gating v1 is now in production.")
    expect(page.locator("h1")).to_contain_text("production")
    expect(page.get_by_role("button", name="Promote to production")).to_have_count(0)
    maya.snap("gating-promoted")

    # The dashboard: every chart is an inline SVG that is drawn with marks and is on screen.
    charts = page.locator(".charts svg.chart")
    expect(charts.first).to_be_visible()
    assert charts.count() >= 5
    for i in range(charts.count()):
        chart = charts.nth(i)
        chart.scroll_into_view_if_needed()
        expect(chart).to_be_visible()
        box = chart.bounding_box()
        assert box and box["width"] > 150 and box["height"] > 100, box
        assert chart.locator("rect, path, polyline, line, circle").count() > 2
    # Values on the dark cells of the routing heatmap are drawn in white, readable.
    dark = page.locator(".charts text[style='fill:#fff']")
    expect(dark.first).to_be_visible()
    assert dark.first.evaluate("e => getComputedStyle(e).fill") == "rgb(255, 255, 255)"
    for name in DOMAINS:
        expect(page.locator("main")).to_contain_text(f"{name}-head v1")
    charts.last.scroll_into_view_if_needed()
    maya.snap("gating-dashboard-charts")

    # Anyone can ask the production model, logged in or not.
    guest = visitor("guest")
    page = guest.go("/gating/", "gating-index")
    expect(page.locator("main")).to_contain_text("gating v1")
    page.get_by_role("link", name="Try the production model in the playground").click()
    guest.snap("playground")
    page.locator("#texts").fill(
        "URGENT! You have won a 1000 cash prize. Text CLAIM to 81234 now to collect.\n"
        "The striker scored twice as the home side won the derby on Saturday.")
    page.get_by_role("button", name="Predict").click()
    rows = page.locator("#predictions tbody tr")
    expect(rows).to_have_count(2)
    labels = {d.name: d.labels for d in Domain.objects.all()}
    answers = []
    for i in range(2):
        cells = rows.nth(i).locator("td")
        domain, label = cells.nth(1).inner_text(), cells.nth(2).inner_text()
        assert domain in labels and label in labels[domain], (domain, label)
        answers.append(domain)
    assert answers[0] == "spam"
    expect(page.locator("main")).to_contain_text("gating v1 ·")
    guest.snap("playground-answer")
