"""The marketplace's job handlers, run in this process: what a cancel leaves behind."""
from __future__ import annotations

import pytest

from experts import services
from experts.models import ExpertVersion, Notification
from tests.experts.pages_support import dataset_file, real_artifact, upload_files
from tests.helpers import make_domain, make_expert
from training import runner
from training import services as job_services
from training.models import Job

S = ExpertVersion.Status
ROWS = [(f"a wonderful film, part {i}", "pos") for i in range(12)] + [
    (f"a dreadful film, part {i}", "neg") for i in range(12)]


@pytest.fixture
def expert(owner, maintainer):
    return make_expert(owner, make_domain(created_by=maintainer), "sharp")


@pytest.fixture
def cancel_on_claim(monkeypatch):
    """The user clicks Cancel just as a worker claims the job: the handler runs, and the first
    stop check it (or the ML core) makes sees the request."""
    claim = Job.claim

    def claim_then_cancel(self, **kwargs):
        claimed = claim(self, **kwargs)
        job_services.job_cancel(job=self)
        return claimed

    monkeypatch.setattr(Job, "claim", claim_then_cancel)


def _run(job_id: int) -> tuple[Job, str]:
    status = runner.run_job(job_id, worker="w1")
    return Job.objects.get(pk=job_id), status


def test_it_ends_a_cancelled_training_cancelled_with_the_version_saying_so(
        owner, expert, client, cancel_on_claim):
    version = services.expert_version_train_request(
        user=owner, expert=expert, dataset=dataset_file(ROWS), kind="head", epochs=50)
    job, status = _run(version.training_params["training_job"])

    # The ML core noticed the stop (its TrainingStopped) and the job ended cancelled, not failed.
    assert status == Job.Status.CANCELLED and job.status == Job.Status.CANCELLED
    assert job.error.startswith("cancelled at the user's request (stopped ")
    version.refresh_from_db()
    assert version.status == S.CANCELLED
    assert version.error == "training was cancelled before it finished"
    assert not version.weights and not Job.objects.filter(kind=Job.Kind.VALIDATE_EXPERT)
    note = Notification.objects.get(user=owner)
    assert note.message == f"{version.label}: training was cancelled before it finished"

    client.force_login(owner)
    page = client.get(f"/experts/{expert.pk}/versions/1/").content.decode()
    assert 'class="status status-cancelled">Cancelled<' in page
    assert "Cancelled:</strong> training was cancelled" in page
    assert 'id="version-watch"' not in page  # nothing is running any more


def test_it_ends_a_cancelled_validation_cancelled_too(owner, expert, cancel_on_claim):
    version = services.expert_version_upload(user=owner, expert=expert,
                                             **upload_files(*real_artifact()))
    job, status = _run(version.training_params["validation_job"])

    assert status == Job.Status.CANCELLED and job.status == Job.Status.CANCELLED
    version.refresh_from_db()
    assert version.status == S.CANCELLED
    assert version.error == "validation was cancelled before it finished"
    assert version.metrics == {}


def test_it_leaves_a_version_a_job_no_longer_owns_as_it_is(owner, expert):
    version = services.expert_version_train_request(
        user=owner, expert=expert, dataset=dataset_file(ROWS), kind="head")
    assert version.mark_invalid("the worker died")
    # A late verdict of the same job does not overwrite the first one.
    assert not version.mark_cancelled("training was cancelled before it finished")
    assert not version.mark_awaiting_review(metrics={"test_accuracy": 1.0})
    version.refresh_from_db()
    assert (version.status, version.error) == (S.INVALID, "the worker died")


def test_it_trains_a_lora_expert_from_a_dataset_and_validates_it(owner, expert):
    rows = [(f"{w} film number {i}", y) for i in range(20)
            for w, y in (("a wonderful", "pos"), ("a dreadful", "neg"))]
    version = services.expert_version_train_request(
        user=owner, expert=expert, dataset=dataset_file(rows), kind="lora", epochs=1)
    job, status = _run(version.training_params["training_job"])
    assert status == Job.Status.SUCCEEDED, job.error
    version.refresh_from_db()
    assert version.kind == "lora" and version.manifest["kind"] == "lora"
    assert version.manifest["architecture"]["adapter_config"]["task_type"] == "SEQ_CLS"
    assert version.weights.name.endswith(".safetensors")
    job, status = _run(version.training_params["validation_job"])
    assert status == Job.Status.SUCCEEDED, job.error
    version.refresh_from_db()
    assert version.status == S.AWAITING_REVIEW, version.error
    assert "loads and runs" in {c["name"] for c in version.checks
                                if c["where"] == "worker" and c["ok"]}
