"""What the security tests act on: `world`, one of every writable object (news, expert and
artifact come from tests/conftest.py)."""
from __future__ import annotations

import pytest

from tests.helpers import FINGERPRINT, make_expert, make_version


@pytest.fixture
def world(owner, stranger, maintainer, news, expert):
    """One of everything a write can target: alice's expert with a version awaiting review,
    approved versions of alice and mallory, alice's open request, a queued job, an evaluated
    gating version and another one in production, an unread notification for each user."""
    from django.core.files.base import ContentFile

    from experts.models import DataSplit, ExpertRequest, ExpertVersion, Notification
    from gating.models import GatingMember, GatingVersion, Promotion
    from training.models import Job

    pending = make_version(expert, status=ExpertVersion.Status.AWAITING_REVIEW)
    approved = [make_version(expert, status=ExpertVersion.Status.APPROVED),
                make_version(make_expert(stranger, news, "mallory-news"),
                             status=ExpertVersion.Status.APPROVED)]
    split = DataSplit(domain=news, kind=DataSplit.Kind.TRAIN, n_rows=1, sha256="0" * 64)
    split.file.save("train.jsonl", ContentFile(b'{"text": "a", "label": "World"}\n'))
    request = ExpertRequest.objects.create(author=owner, title="Need a legal expert")
    job = Job.objects.create(kind=Job.Kind.SELF_CHECK, created_by=maintainer)
    gating = []
    for number in (1, 2):
        version = GatingVersion.objects.create(number=number, status="evaluated",
                                               backbone_fingerprint=FINGERPRINT)
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
