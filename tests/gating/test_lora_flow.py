"""With a real Celery worker: a LoRA adapter written by a plain transformers + peft script (no
code of this project) is uploaded through the API, validated, approved, joins a gating model
with head and branch experts, answers predict, and its download loads with PeftModel."""
from __future__ import annotations

import io
import zipfile

import pytest
import torch

from experts.models import ExpertVersion
from gating import serving
from tests.gating.conftest import domain_labels, domain_splits, shared_domain
from tests.helpers import api_client_for, finished_job, make_expert, make_version, wait_for
from training.models import Job

pytestmark = pytest.mark.worker


@pytest.fixture(scope="session")
def peft_folder(tmp_path_factory):
    """What a contributor's own ~20-line script writes: LoRA on the platform's backbone."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from experts.ml.backbone import packaged_model_path

    base = packaged_model_path()  # the backbone the platform runs (what the hub id names)
    labels = domain_labels("sentiment")
    rows = domain_splits("sentiment")["train"]
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels))
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8,
                                             target_modules=["query", "value"]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    for _ in range(2):
        for b in range(0, len(rows), 16):
            batch = rows[b : b + 16]
            enc = tokenizer([r["text"] for r in batch], padding=True, return_tensors="pt")
            y = torch.tensor([labels.index(r["label"]) for r in batch])
            loss = torch.nn.functional.cross_entropy(model(**enc).logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    out = tmp_path_factory.mktemp("peft") / "sentiment-lora"
    model.save_pretrained(out)
    return out, labels



def test_a_plain_peft_adapter_goes_from_upload_to_predict_and_back_to_peft(
        celery_worker_process, gating_artifacts, branch_artifact, peft_folder, maintainer,
        owner, clean_media, tmp_path):
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoModelForSequenceClassification

    from experts.ml.backbone import packaged_model_path

    by_domain = {a.domain: a for a in gating_artifacts}
    for name in ("news", "spam"):
        make_version(make_expert(owner, shared_domain(name)), artifact=by_domain[name].folder)
    make_version(make_expert(owner, shared_domain("questions")), artifact=branch_artifact.folder)
    expert = make_expert(owner, shared_domain("sentiment"), name="sentiment-lora")

    folder, labels = peft_folder
    client = api_client_for(owner)
    with open(folder / "adapter_config.json", "rb") as cfg, \
            open(folder / "adapter_model.safetensors", "rb") as weights:
        response = client.post(f"/api/v1/experts/{expert.pk}/versions/", {
            "adapter_config": cfg, "adapter_model": weights, "labels": ",".join(labels)},
            format="multipart")
    assert response.status_code == 201, response.content
    number = response.json()["number"]
    version = ExpertVersion.objects.get(expert=expert, number=number)
    assert version.kind == "lora"
    wait_for(lambda: ExpertVersion.objects.get(pk=version.pk).status != "validating",
             timeout=240, what="validation")
    version.refresh_from_db()
    assert version.status == ExpertVersion.Status.AWAITING_REVIEW, version.error
    assert {c["name"] for c in version.checks if c["ok"]} >= {"loads and runs",
                                                              "tensors match architecture"}
    staff = api_client_for(maintainer)
    response = staff.post(f"/api/v1/experts/{expert.pk}/versions/{number}/review/",
                          {"action": "approve"}, format="json")
    assert response.status_code in (200, 201), response.content

    response = staff.post("/api/v1/gating/", {"params": {"epochs": 10}}, format="json")
    assert response.status_code == 201, response.content
    version_id = response.json()["version"]["id"]
    train_job = wait_for(lambda: finished_job(response.json()["job"]["id"]), timeout=300,
                         what="gating training")
    assert train_job.status == Job.Status.SUCCEEDED, train_job.error
    report = wait_for(lambda: staff.get(f"/api/v1/gating/{version_id}/").json()["report"],
                      timeout=300, what="evaluation")
    kinds = {e["kind"] for e in report["experts"]}
    assert kinds == {"head", "branch", "lora"}
    key = str(version.pk)
    c = report["compute"]
    assert 0 < c["expert_routed_flops_per_input"][key] < c["expert_flops_per_input"][key]
    assert staff.post(f"/api/v1/gating/{version_id}/promote/").status_code == 201

    serving.reset()
    response = api_client_for(None).post(
        "/api/v1/predict/", {"texts": ["a gorgeous, moving and beautifully acted film",
                                       "What is the capital city of Australia?"]},
        format="json")
    assert response.status_code == 200, response.content
    predictions = response.json()["predictions"]
    assert predictions[0]["domain"] == "sentiment"
    assert predictions[0]["experts"][0]["expert"] == key

    response = client.get(f"/api/v1/experts/{expert.pk}/versions/{number}/download/",
                          {"file": "folder"})
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)
                               if response.streaming else response.content)).extractall(tmp_path)
    downloaded = next(tmp_path.glob("*/adapter_config.json")).parent
    assert (downloaded / "README.md").read_text().startswith("---\n")
    loaded = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(
        packaged_model_path(), num_labels=len(labels)), downloaded).eval()
    original = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(
        packaged_model_path(), num_labels=len(labels)), folder).eval()
    assert loaded.base_model.model.config.num_labels == len(labels)
    ours, theirs = get_peft_model_state_dict(loaded), get_peft_model_state_dict(original)
    assert set(ours) == set(theirs) and len(ours) > 2
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name  # the uploaded bytes, served back
