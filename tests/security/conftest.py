"""Objects the security tests act on: a domain, an expert owned by alice, a valid artifact."""
from __future__ import annotations

import pytest

from experts.models import Domain, Expert
from tests.helpers import make_artifact

NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


@pytest.fixture
def news(db) -> Domain:
    return Domain.objects.create(name="news", labels=NEWS_LABELS, description="topics")


@pytest.fixture
def expert(owner, news) -> Expert:
    return Expert.objects.create(owner=owner, domain=news, name="news-mlp")


@pytest.fixture(scope="session")
def artifact(tmp_path_factory) -> tuple[bytes, bytes]:
    """(manifest bytes, weights bytes) of a valid head expert on the platform backbone."""
    manifest, weights = make_artifact(tmp_path_factory.mktemp("security-artifact"))
    return manifest.read_bytes(), weights.read_bytes()


@pytest.fixture
def world(owner, stranger, maintainer, news, expert):
    """One of everything a write can target: alice's expert with a version awaiting review,
    approved versions of alice and mallory, alice's open request, a queued job, an evaluated
    gating version and another one in production, an unread notification for each user."""
    from django.core.files.base import ContentFile

    from experts.models import DataSplit, ExpertRequest, ExpertVersion, Notification
    from gating.models import GatingMember, GatingVersion, Promotion
    from training.models import Job

    fp = "f" * 64
    pending = ExpertVersion.objects.create(
        expert=expert, number=1, status=ExpertVersion.Status.AWAITING_REVIEW, kind="head",
        manifest={"split_layer": 6}, backbone_fingerprint=fp)
    approved = [ExpertVersion.objects.create(
        expert=expert, number=2, status=ExpertVersion.Status.APPROVED, kind="head",
        manifest={"split_layer": 6}, backbone_fingerprint=fp)]
    other = Expert.objects.create(owner=stranger, domain=news, name="mallory-news")
    approved.append(ExpertVersion.objects.create(
        expert=other, number=1, status=ExpertVersion.Status.APPROVED, kind="head",
        manifest={"split_layer": 6}, backbone_fingerprint=fp))
    split = DataSplit(domain=news, kind=DataSplit.Kind.TRAIN, n_rows=1, sha256="0" * 64)
    split.file.save("train.jsonl", ContentFile(b'{"text": "a", "label": "World"}\n'))
    request = ExpertRequest.objects.create(author=owner, title="Need a legal expert")
    job = Job.objects.create(kind=Job.Kind.SELF_CHECK, created_by=maintainer)
    gating = []
    for number in (1, 2):
        version = GatingVersion.objects.create(number=number, status="evaluated",
                                               backbone_fingerprint=fp)
        GatingMember.objects.bulk_create(GatingMember(version=version, expert_version=v,
                                                      position=i)
                                         for i, v in enumerate(approved))
        gating.append(version)
    Promotion.objects.create(version=gating[1], promoted_by=maintainer)
    for user in (owner, stranger, maintainer):
        Notification.objects.create(user=user, message="hello")
    return {"owner": owner, "stranger": stranger, "maintainer": maintainer, "domain": news,
            "expert": expert, "pending": pending, "approved": approved, "request": request,
            "job": job, "gating": gating[0], "production": gating[1]}
