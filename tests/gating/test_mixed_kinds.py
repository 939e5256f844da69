"""With a real Celery worker: head and branch experts, approved side by side, train from the
default "all approved" selection, evaluate, are promoted and answer predict."""
from __future__ import annotations

import pytest

from gating import serving
from gating.models import GatingVersion
from tests.gating.conftest import shared_domain
from tests.helpers import api_client_for, finished_job, make_expert, make_version, wait_for
from training.models import Job

pytestmark = pytest.mark.worker



def test_it_combines_head_and_branch_experts_end_to_end(
        celery_worker_process, gating_artifacts, branch_artifact, make_gating_setup,
        maintainer, owner, clean_media):
    heads = make_gating_setup(owner, artifacts=gating_artifacts)
    branch = make_version(make_expert(owner, shared_domain("questions")),
                          artifact=branch_artifact.folder)
    assert branch.kind == "branch" and branch.manifest["split_layer"] == 4
    staff = api_client_for(maintainer)
    response = staff.post("/api/v1/gating/", {"params": {"epochs": 10}}, format="json")
    assert response.status_code == 201, response.content  # all approved: no selection given
    version_id = response.json()["version"]["id"]
    train_job = wait_for(lambda: finished_job(response.json()["job"]["id"]), timeout=300,
                         what="gating training")
    assert train_job.status == Job.Status.SUCCEEDED, train_job.error
    version = GatingVersion.objects.get(pk=version_id)
    assert version.members.count() == 4
    eval_job = wait_for(lambda: finished_job(version.eval_job_id), timeout=300, what="evaluation")
    assert eval_job.status == Job.Status.SUCCEEDED, eval_job.error

    report = staff.get(f"/api/v1/gating/{version_id}/").json()["report"]
    assert set(report["domains"]) == {"news", "spam", "sentiment", "questions"}
    assert report["router_layers"] == [6, 0]
    kinds = {e["key"]: (e["kind"], e["split_layer"]) for e in report["experts"]}
    assert kinds[str(branch.pk)] == ("branch", 4)
    assert {kinds[str(v.pk)] for v in heads} == {("head", 6)}
    # The branch's own layers cost FLOPs only on the inputs routed to it.
    c = report["compute"]
    key = str(branch.pk)
    share = c["dispatch_share"][key]
    assert 0 < share < 1
    assert c["expert_routed_flops_per_input"][key] < c["expert_flops_per_input"][key]
    assert c["expert_flops_per_input"][key] > 10 * max(
        c["expert_flops_per_input"][str(v.pk)] for v in heads)
    shared = c["trunk_flops_per_input"] + c["router_flops_per_input"]
    routed = shared + sum(c["expert_routed_flops_per_input"].values())
    assert c["routed_flops_per_input"] == pytest.approx(routed, rel=1e-9)
    assert c["routed_flops_per_input"] < c["dense_flops_per_input"]
    assert report["summary"]["accuracy"] > 0.4

    response = staff.post(f"/api/v1/gating/{version_id}/promote/")
    assert response.status_code == 201, response.content
    serving.reset()
    response = api_client_for(None).post(
        "/api/v1/predict/", {"texts": ["What is the capital city of Australia?",
                                       "URGENT! You have won a 1000 cash prize, call now."]},
        format="json")
    assert response.status_code == 200, response.content
    predictions = response.json()["predictions"]
    assert predictions[0]["domain"] == "questions"
    assert predictions[0]["experts"][0]["expert"] == key
    assert predictions[1]["domain"] == "spam"
