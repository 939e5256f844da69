"""Validation runs an uploaded expert on the domain's real texts: finite weights that give NaN
or Inf there, or logits that never change, end the version invalid with a recorded check,
though the one made-up input of the 'loads and runs' smoke pass looks fine."""
from __future__ import annotations

import json

import pytest
import torch

from experts import services
from experts.ml.artifact import _dummy_trunk
from experts.models import ExpertVersion, Notification
from tests.experts.pages_support import upload_files
from tests.helpers import NEWS_LABELS, artifact_bytes, data_dir, make_domain, make_expert
from training import runner
from training.ml.scoring import OUTPUT_CHECK
from training.models import Job


@pytest.fixture
def news_expert(owner, maintainer):
    """alice's expert for a news domain whose private test split holds 40 real texts."""
    with open(data_dir() / "news" / "dev.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for _, line in zip(range(40), fh, strict=False)]
    domain = make_domain("news", labels=NEWS_LABELS, created_by=maintainer,
                         splits={"test": rows})
    return make_expert(owner, domain, "news-mlp")


def _blow_up_off_the_smoke_input(expert) -> None:
    """fc1 rows of ±1e30 along a direction orthogonal to the smoke pass's two normalised
    inputs: there fc1 gives rounding noise and the logits stay finite; on real texts it gives
    ~1e30, and fc2's 1e10 weights take the logits past float32's range (Inf)."""
    head = expert.head
    z = head.norm(_dummy_trunk(head.norm.normalized_shape[0]).pooled).double()  # (2, H)
    q, _ = torch.linalg.qr(z.T)  # (H, 2): the span of the smoke inputs
    u = torch.randn(z.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    v = u - q @ (q.T @ u)
    v = v / v.norm()  # (H,)
    signs = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(head.fc1.out_features // 2)
    head.fc1.weight.copy_(signs[:, None] * 1e30 * v[None, :])
    head.fc1.bias.zero_()
    head.fc2.weight.fill_(1e10)
    head.fc2.bias.zero_()


def _ignore_the_input(expert) -> None:
    expert.head.fc1.weight.zero_()  # fc1 gives its bias whatever the input


def _validate(owner, expert, tweak=None, seed: int = 0) -> ExpertVersion:
    manifest, weights = artifact_bytes(seed=seed, tweak=tweak)
    version = services.expert_version_upload(user=owner, expert=expert,
                                             **upload_files(manifest, weights))
    job_id = version.training_params["validation_job"]
    runner.run_job(job_id, worker="w1")
    assert Job.objects.get(pk=job_id).status == Job.Status.SUCCEEDED
    version.refresh_from_db()
    return version


@pytest.mark.parametrize(("tweak", "reason"), [
    (_blow_up_off_the_smoke_input, "non-finite logits (NaN or Inf) on "),
    (_ignore_the_input, "the same logits for all 40 inputs"),
])
def test_it_refuses_an_expert_whose_outputs_on_real_texts_are_broken(tweak, reason, owner,
                                                                    news_expert):
    version = _validate(owner, news_expert, tweak)

    assert version.status == ExpertVersion.Status.INVALID
    assert version.error.startswith(f"{OUTPUT_CHECK}: {reason}"), version.error
    checks = {c["name"]: c for c in version.checks if c["where"] == "worker"}
    assert checks["loads and runs"]["ok"], "the smoke pass alone does not see it"
    assert not checks[OUTPUT_CHECK]["ok"]
    assert checks[OUTPUT_CHECK]["message"].startswith(reason)
    assert version.metrics == {}
    assert Notification.objects.filter(user=owner, message__contains=reason).exists()


def test_it_records_the_output_check_of_a_sane_expert(owner, news_expert):
    version = _validate(owner, news_expert)

    assert version.status == ExpertVersion.Status.AWAITING_REVIEW
    check = next(c for c in version.checks if c["name"] == OUTPUT_CHECK)
    assert check == {"name": OUTPUT_CHECK, "ok": True, "where": "worker",
                     "message": "finite, input-dependent logits on 40 test examples"}
    assert version.metrics["n_eval"] == 40
