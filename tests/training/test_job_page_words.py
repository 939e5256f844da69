"""Job pages say in words what failed and what to do; the traceback is folded away and only
for maintainers; the bar shows the failure; metrics are a table, not raw JSON."""
from __future__ import annotations

import re

import pytest

from moecollab_site.errors import DomainError
from training import runner
from training.models import Job

CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Exceeded)\b")


@pytest.fixture
def handlers(monkeypatch):
    table: dict = {}
    monkeypatch.setattr(runner, "HANDLERS", table)
    return table


def _failed_job(handlers, user, exc: Exception) -> Job:
    def boom(job, ctx):
        ctx.progress(3, 20, "checking the artifact", force=True)
        raise exc

    handlers[Job.Kind.VALIDATE_EXPERT] = boom
    job = Job.objects.create(kind=Job.Kind.VALIDATE_EXPERT, created_by=user)
    assert runner.run_job(job.pk, worker="w1") == Job.Status.FAILED
    job.refresh_from_db()
    return job


def _before_log(page: str) -> str:
    """The page above its log (the log is the job's own record, lines as they happened)."""
    return page.split('id="job-log"')[0]


def test_it_records_a_domain_error_as_its_message_alone(db, handlers, owner):
    job = _failed_job(handlers, owner, DomainError("duplicate weights: identical to a/b v1"))
    assert job.error_summary == "duplicate weights: identical to a/b v1"
    assert "Traceback (most recent call last)" in job.traceback
    assert "failed: duplicate weights" in job.log_tail


def test_it_words_an_unexpected_error_without_its_class(db, handlers, owner):
    job = _failed_job(handlers, owner, KeyError("dataset"))
    assert job.error_summary == ("an unexpected error in the platform: a value it needs "
                                 "('dataset') is missing")
    assert "KeyError" in job.traceback  # the maintainers' part keeps it


def test_the_starter_sees_what_failed_and_what_to_do_without_the_traceback(
        db, handlers, owner, client):
    job = _failed_job(handlers, owner, ZeroDivisionError("division by zero"))
    client.force_login(owner)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    top = _before_log(page)
    assert "What went wrong" in top
    assert "an unexpected error in the platform (division by zero)" in top
    assert "What to do:</strong> <span>Fix what the reason names in the artifact" in top
    assert "Traceback" not in page and not CLASS_NAME.search(top)
    # The bar says it failed, and where.
    assert 'class="job-bar is-failed"' in top
    assert "Failed at 15 % while checking the artifact" in top
    status = client.get(f"/jobs/{job.pk}/status.json").json()
    assert status["reason"] == job.error_summary and status["traceback"] == ""
    assert "Traceback" not in status["error"]


def test_a_maintainer_gets_the_traceback_folded_away(db, handlers, owner, maintainer, client):
    job = _failed_job(handlers, owner, ZeroDivisionError("division by zero"))
    client.force_login(maintainer)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    folded = re.search(r'<details id="job-traceback"[^>]*>(.*?)</details>', page, re.S)
    assert folded and "Traceback (most recent call last)" in folded.group(1)
    assert "<details id=\"job-traceback\" class=\"job-traceback\" open" not in page
    # The reason above it is still the words, not the exception line.
    reason = re.search(r'<p id="job-reason" class="job-reason">(.*?)</p>', page, re.S).group(1)
    assert reason == "an unexpected error in the platform (division by zero)"
    status = client.get(f"/jobs/{job.pk}/status.json").json()
    assert "ZeroDivisionError" in status["traceback"]


def test_it_shows_metrics_as_a_table(db, owner, client):
    job = Job.objects.create(kind=Job.Kind.SELF_CHECK, created_by=owner,
                             status=Job.Status.SUCCEEDED,
                             metrics={"dev_accuracy": 0.912345, "n_eval": 60,
                                      "routing": {"entropy": 0.25, "dead": []}})
    client.force_login(owner)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    table = re.search(r'<table id="job-metrics".*?</table>', page, re.S).group(0)
    assert '<th scope="row">dev_accuracy</th><td>0.9123</td>' in table
    assert '<th scope="row">n_eval</th><td>60</td>' in table
    assert '<th scope="row">routing.entropy</th><td>0.25</td>' in table
    assert '<th scope="row">routing.dead</th><td>–</td>' in table
    assert "{&#x27;" not in page and '{"dev_accuracy"' not in page  # no raw JSON
    assert 'class="job-bar is-succeeded"' in page and "Finished" in page
    rows = client.get(f"/jobs/{job.pk}/status.json").json()["metric_rows"]
    assert ["routing.entropy", "0.25"] in rows


def test_a_validation_that_found_the_artifact_invalid_says_so(db, owner, client):
    job = Job.objects.create(kind=Job.Kind.VALIDATE_EXPERT, created_by=owner,
                             status=Job.Status.SUCCEEDED,
                             metrics={"valid": False, "failed_check": "finite values",
                                      "reason": "tensor 'head.fc1.weight' contains NaN"})
    client.force_login(owner)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert ("The artifact failed the check “finite values”: tensor &#x27;head.fc1.weight&#x27; "
            "contains NaN.") in page
    assert 'id="job-outcome" class="job-outcome">' in page  # shown, not hidden


def test_the_list_says_why_each_failed_job_failed(db, handlers, owner, client):
    job = _failed_job(handlers, owner, DomainError("the dataset has one label"))
    Job.objects.create(kind=Job.Kind.SELF_CHECK, created_by=owner)
    client.force_login(owner)
    page = client.get("/jobs/").content.decode()
    assert '<span class="job-list-reason">the dataset has one label</span>' in page
    assert f'<a href="/jobs/{job.pk}/">what to do</a>' in page
    assert 'class="job-bar is-failed"' in page and 'title="Failed at 15 %' in page
    assert "Waiting for a worker" in page


def test_the_list_keeps_its_filter_across_pages(db, owner, client):
    Job.objects.bulk_create(Job(kind=Job.Kind.SELF_CHECK, created_by=owner,
                                status=Job.Status.FAILED, error="x") for _ in range(30))
    client.force_login(owner)
    page = client.get("/jobs/?status=failed").content.decode()
    assert 'href="?page=2&amp;status=failed">older</a>' in page


def test_a_killed_worker_is_said_in_words(db, owner):
    from training.tasks import _job_task_died

    job = Job.objects.create(kind=Job.Kind.TRAIN_EXPERT, created_by=owner)
    assert job.claim(worker="w1")
    _job_task_died(args=[job.pk], exception=MemoryError())
    job.refresh_from_db()
    assert job.error == "the worker process running this job died: the worker ran out of memory"
    assert job.advice.startswith("The work itself may be fine: the worker running it stopped")
