"""In a real browser: a failed job's page says what failed and what to do, its bar shows the
failure, the traceback is folded away (maintainers only), and metrics are a table."""
from __future__ import annotations

import re

from django.utils import timezone
from playwright.sync_api import expect

from tests.e2e.conftest import log_in
from tests.e2e.layout import assert_readable_layout
from training.models import Job

REASON = ("tensor 'head.fc1.weight' has shape [8, 384] but the described architecture "
          "(head expert, 2 labels, mlp_hidden 16) needs [16, 384]")
TRACEBACK = ('Traceback (most recent call last):\n  File "experts/handlers.py", line 97, in '
             'validate_expert\n    checks, module, _ = inspect_and_load(...)\n'
             "experts.ml.upload_checks.ArtifactError: " + REASON)


def _failed_job(owner) -> Job:
    return Job.objects.create(
        kind=Job.Kind.VALIDATE_EXPERT, created_by=owner, status=Job.Status.FAILED,
        progress_current=3, progress_total=20, progress_message="checking the artifact",
        log_tail="00:00:01 started on w1\n00:00:02 checking the artifact\n"
                 f"00:00:03 failed: {REASON}",
        error=f"{REASON}\n\n{TRACEBACK}", started_at=timezone.now(),
        finished_at=timezone.now())


def _finished_page(page) -> None:
    """The page has polled once and drawn the job as the server sees it."""
    page.wait_for_load_state("networkidle")


def test_a_failed_job_reads_as_a_failure_with_words_not_a_crash(visitor, owner, maintainer):
    job = _failed_job(owner)

    maya = visitor("maya")
    log_in(maya, "maya", "pw-maya")
    page = maya.go(f"/jobs/{job.pk}/", "failed-job")
    _finished_page(page)
    maya.snap("failed-job-after-poll")
    assert_readable_layout(page)

    expect(page.locator("#job-status")).to_have_text("failed")
    bar = page.locator("#job-progress")
    expect(bar).to_have_class(re.compile(r"\bis-failed\b"))
    # The bar is drawn red (its track pink, its fill hatched red), not the running blue.
    track = page.evaluate(
        "() => getComputedStyle(document.getElementById('job-progress')).backgroundColor")
    assert track == "rgb(253, 232, 232)", track
    expect(page.locator("#job-progress-words")).to_contain_text(
        "Failed at 15 % while checking the artifact")
    expect(page.locator("#job-reason")).to_have_text(REASON)
    expect(page.locator("#job-advice")).to_contain_text(
        "Fix what the reason names in the artifact and upload it as a new version")
    # The traceback is there for the maintainer, folded: its text is not shown until opened.
    details = page.locator("#job-traceback")
    expect(details).to_be_visible()
    expect(details.locator("pre")).to_be_hidden()
    details.locator("summary").click()
    expect(details.locator("pre")).to_be_visible()
    expect(details.locator("pre")).to_contain_text("Traceback (most recent call last)")
    maya.snap("failed-job-traceback-opened")
    assert_readable_layout(page)
    expect(page.locator("#job-no-metrics")).to_have_text("This job recorded no metrics.")

    # The starter sees the same words, and no traceback at all.
    alice = visitor("alice")
    log_in(alice, "alice", "pw-alice")
    page = alice.go(f"/jobs/{job.pk}/", "failed-job-as-starter")
    _finished_page(page)
    alice.snap("failed-job-as-starter-after-poll")
    assert_readable_layout(page)
    expect(page.locator("#job-reason")).to_have_text(REASON)
    expect(page.locator("#job-traceback")).to_be_hidden()
    assert "Traceback" not in page.content() and "ArtifactError" not in page.content()

    page = alice.go("/jobs/", "job-list")
    assert_readable_layout(page)
    row = page.locator("tr", has=page.locator(f'a[href="/jobs/{job.pk}/"]')).first
    expect(row.locator(".job-list-reason")).to_contain_text("tensor 'head.fc1.weight'")
    expect(row.locator("progress")).to_have_class(re.compile(r"\bis-failed\b"))


def test_a_finished_job_shows_its_metrics_as_a_table_and_its_result(visitor, owner):
    job = Job.objects.create(
        kind=Job.Kind.TRAIN_EXPERT, created_by=owner, status=Job.Status.SUCCEEDED,
        progress_current=1, progress_total=1,
        progress_message="identical to alice/sharp v1; nothing new was created",
        metrics={"dev_accuracy": 0.8333333, "dev_macro_f1": 0.81234, "epochs_run": 3,
                 "existing_version": "alice/sharp v1",
                 "existing_version_link": "/experts/1/versions/1/",
                 "outcome": "training reproduced alice/sharp v1 exactly (identical weights, "
                            "sha256 0123456789ab…); nothing new was created, so alice/sharp v2 "
                            "is not kept. Use alice/sharp v1, or train with other data or "
                            "settings for a different expert"},
        started_at=timezone.now(), finished_at=timezone.now())
    alice = visitor("alice")
    log_in(alice, "alice", "pw-alice")
    page = alice.go(f"/jobs/{job.pk}/", "succeeded-job")
    _finished_page(page)
    alice.snap("succeeded-job-after-poll")
    assert_readable_layout(page)
    expect(page.locator("#job-progress")).to_have_class(re.compile(r"\bis-succeeded\b"))
    expect(page.locator("#job-percent")).to_have_text("100%")
    expect(page.locator("#job-error")).to_be_hidden()
    expect(page.locator("#job-outcome")).to_contain_text("nothing new was created")
    expect(page.locator("#job-outcome-link a")).to_have_attribute("href",
                                                                 "/experts/1/versions/1/")
    table = page.locator("#job-metrics")
    expect(table).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(table.locator("tr", has_text="dev_accuracy").locator("td")).to_have_text("0.8333")
    assert "{" not in table.inner_text()
    expect(page.locator("#job-log")).to_have_text("No log lines.")
