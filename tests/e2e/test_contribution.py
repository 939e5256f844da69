"""A contributor uploads an expert through the form and watches a real worker validate it; a
maintainer approves it from the review queue."""
from __future__ import annotations

import contextlib
import re

import pytest
from playwright.sync_api import expect

from experts import services
from experts.models import ExpertVersion
from moecollab_site.demo import SAMPLE_DATA_DIR
from tests.e2e.conftest import JOB_TIMEOUT_MS, log_in
from tests.helpers import make_artifact

pytestmark = pytest.mark.worker
QUEUES = ("cpu", "gpu")


@contextlib.contextmanager
def worker_held_back(worker):
    """The worker takes no new job until the block ends, as if busy with someone else's: the
    page is then sure to be drawn before validation ends (Celery's remote control)."""
    from moecollab_site.celery import app

    for queue in QUEUES:
        replies = app.control.cancel_consumer(queue, destination=[worker.hostname],
                                              reply=True, timeout=15)
        assert replies, f"worker {worker.hostname} did not answer cancel_consumer({queue})"
    try:
        yield
    finally:
        for queue in QUEUES:
            app.control.add_consumer(queue, destination=[worker.hostname], reply=True,
                                     timeout=15)


def test_it_uploads_an_expert_that_is_validated_and_approved(
        visitor, celery_worker_process, owner, maintainer, tmp_path):
    services.domain_import_folder(path=SAMPLE_DATA_DIR / "news")
    manifest, weights = make_artifact(tmp_path / "artifact", domain="news")

    alice = visitor("alice")
    log_in(alice, "alice", "pw-alice")
    page = alice.page
    page.get_by_role("link", name="Experts", exact=True).first.click()
    page.get_by_role("link", name="New expert").click()
    alice.snap("new-expert-form")
    page.get_by_label("Domain").select_option("news")
    page.get_by_label("Name").fill("wire-topics")
    page.get_by_label("Description").fill("Topic of a wire story, from a small head.")
    page.get_by_role("button", name="Create expert").click()
    expect(page.get_by_role("heading", name="wire-topics")).to_be_visible()
    alice.snap("expert-card")

    page.get_by_role("link", name="Upload a version").first.click()  # the page's own button
    expect(page.get_by_role("heading", name="Upload a version of wire-topics")).to_be_visible()
    page.get_by_label("Manifest").set_input_files(manifest)
    page.get_by_label("Weights").set_input_files(weights)
    alice.snap("upload-form-filled")
    with worker_held_back(celery_worker_process):
        page.get_by_role("button", name="Upload").click()
        # upload.js posts the files and follows the answer to the new version's page, where
        # the version waits for the worker.
        expect(page).to_have_url(re.compile(r"/experts/\d+/versions/1/$"))
        expect(page.locator(".messages")).to_contain_text(
            "Version 1 uploaded; validation is queued")
        status = page.locator("h1 .status")
        expect(status).to_have_text("Validating")
        expect(page.locator("#version-watch")).to_contain_text("This page updates by itself")
        alice.snap("version-uploaded")

    # The worker takes the job; the page reloads itself when the validation job ends.
    expect(status).to_have_text("Awaiting review", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#version-watch")).to_have_count(0)
    alice.snap("version-validated")
    checks = page.locator("table.checks tbody tr")
    expect(checks.first).to_be_visible()
    assert checks.count() >= 4
    expect(page.locator("table.checks .cross")).to_have_count(0)
    expect(page.locator("table.checks")).to_contain_text("validation job")
    expect(page.locator("table.checks")).to_contain_text("on upload")
    version = ExpertVersion.objects.get()
    assert version.status == ExpertVersion.Status.AWAITING_REVIEW
    test_rows = (SAMPLE_DATA_DIR / "news" / "test.jsonl").read_text().split("\n")
    # scored on every row of the private test split of the sample news domain
    assert version.metrics["n_eval"] == len([r for r in test_rows if r.strip()])

    maya = visitor("maya")
    log_in(maya, "maya", "pw-maya")
    page = maya.page
    page.get_by_role("link", name="Experts", exact=True).first.click()
    page.get_by_role("link", name="Review queue").click()
    queued = page.locator("table tbody tr").filter(has_text="wire-topics v1")
    expect(queued).to_contain_text("alice")
    maya.snap("review-queue")
    queued.get_by_role("link", name="wire-topics v1").click()
    expect(page.locator("h1 .status")).to_have_text("Awaiting review")
    maya.snap("review-page")
    page.get_by_label("Review comment").fill("Clean artifact, welcome aboard.")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("h1 .status")).to_have_text("Approved")
    expect(page.locator("ol.thread")).to_contain_text("Clean artifact, welcome aboard.")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    maya.snap("approved")
    assert ExpertVersion.objects.get().reviewed_by == maintainer

    # The contributor hears about it.
    alice.page.get_by_role("link", name="Notifications").first.click()
    expect(alice.page.locator("main")).to_contain_text("approved")
    alice.snap("notifications")
