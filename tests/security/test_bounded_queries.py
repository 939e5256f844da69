"""List pages and list endpoints run the same number of queries for 3 rows as for 30."""
from __future__ import annotations

import itertools

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from experts.models import (
    Domain,
    ExpertRequest,
    ExpertVersion,
    LeaderboardEntry,
)
from gating.models import GatingMember, GatingVersion, Promotion
from moecollab_site.roles import MAINTAINER, user_add_role
from tests.helpers import make_domain, make_expert, make_version
from training.models import Job

MAX_QUERIES = 25
_ids = itertools.count(1)


def _user() -> User:
    n = next(_ids)
    return User.objects.create_user(username=f"user{n}", password="x")


def _domain() -> Domain:
    rows = [{"text": "one", "label": "a"}, {"text": "two", "label": "b"}]
    return make_domain(f"domain-{next(_ids)}", labels=["a", "b"],
                       splits={"train": rows, "test": rows})


def _version(*, domain: Domain | None = None, status: str = "approved") -> ExpertVersion:
    """A version of its own contributor's expert, with a rejected version before it."""
    expert = make_expert(_user(), domain or _domain(), f"expert-{next(_ids)}", description="d")
    make_version(expert, status="rejected")
    return make_version(expert, status=status, accuracy=0.5)


def add_experts(n: int) -> None:
    for _ in range(n):
        _version()


def add_domains(n: int) -> None:
    for _ in range(n):
        _domain()


def _board_domain() -> Domain:
    return Domain.objects.get_or_create(name="board", labels=["a", "b"])[0]


def add_domain_entries(n: int) -> None:
    domain = _board_domain()
    start = LeaderboardEntry.objects.filter(domain=domain).count()
    for rank in range(start + 1, start + n + 1):
        v = _version(domain=domain)
        LeaderboardEntry.objects.create(board="domain", domain=domain, version=v,
                                        user=v.expert.owner, rank=rank, accuracy=0.5,
                                        macro_f1=0.5, evidence={"validation_job": None})


def add_boards(n: int) -> None:
    """Rows of the leaderboards page: a domain board each, and contributor rows."""
    start = LeaderboardEntry.objects.filter(board="contributor").count()
    for i in range(n):
        domain = _domain()
        v = _version(domain=domain)
        LeaderboardEntry.objects.create(board="domain", domain=domain, version=v,
                                        user=v.expert.owner, rank=1, accuracy=0.5)
        LeaderboardEntry.objects.create(board="contributor", user=v.expert.owner,
                                        rank=start + i + 1, credit=0.1, routing_share=0.2,
                                        evidence={"gating_number": 1, "method": "x"})


def add_contributors(n: int) -> None:
    start = LeaderboardEntry.objects.filter(board="contributor").count()
    for i in range(n):
        LeaderboardEntry.objects.create(board="contributor", user=_user(), rank=start + i + 1,
                                        credit=0.1, routing_share=0.2,
                                        evidence={"gating_number": 1, "method": "x"})


def add_jobs(n: int) -> None:
    for i in range(n):
        Job.objects.create(kind=Job.Kind.SELF_CHECK, created_by=_user(),
                           status=["queued", "running", "failed"][i % 3])


def add_gating(n: int) -> None:
    start = GatingVersion.objects.count()
    for number in range(start + 1, start + n + 1):
        members = [_version(), _version()]
        train = Job.objects.create(kind=Job.Kind.TRAIN_GATING, created_by=_user(),
                                   status="succeeded")
        version = GatingVersion.objects.create(
            number=number, status="evaluated", trained_by=_user(), train_job=train,
            eval_job=Job.objects.create(kind=Job.Kind.EVALUATE, status="succeeded"),
            report={"summary": {"accuracy": 0.5}, "routing": {"utilization": 0.9}})
        GatingMember.objects.bulk_create(GatingMember(version=version, expert_version=v,
                                                      position=i)
                                         for i, v in enumerate(members))
        Promotion.objects.create(version=version, promoted_by=_user())


def add_requests(n: int) -> None:
    for i in range(n):
        answer = _version()
        req = ExpertRequest.objects.create(author=_user(), title=f"request {i}",
                                           domain=answer.expert.domain, target_metric="acc")
        ExpertVersion.objects.filter(pk=answer.pk).update(answers_request=req)
        if i % 2:
            ExpertRequest.objects.filter(pk=req.pk).update(status="closed", closed_by=answer)


PAGES = {
    "/experts/": add_experts,
    "/api/v1/experts/": add_experts,
    "/api/v1/domains/": add_domains,
    "/leaderboards/": add_boards,
    "/api/v1/leaderboards/domains/board/": add_domain_entries,
    "/api/v1/leaderboards/contributors/": add_contributors,
    "/jobs/": add_jobs,
    "/api/v1/jobs/": add_jobs,
    "/gating/": add_gating,
    "/api/v1/gating/": add_gating,
    "/experts/requests/?status=all": add_requests,
    "/api/v1/requests/": add_requests,
}


def _count(client: Client, url: str) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, (url, response.content[:300])
    return len(ctx.captured_queries), [q["sql"] for q in ctx.captured_queries]


@pytest.mark.parametrize("viewer", ["anonymous", "maintainer"])
@pytest.mark.parametrize("url", list(PAGES))
def test_it_runs_the_same_number_of_queries_for_3_and_30_rows(url, viewer, db):
    client = Client()
    if viewer == "maintainer":
        user = _user()
        user_add_role(user=user, role=MAINTAINER)
        client.force_login(user)
    _board_domain()
    PAGES[url](3)
    client.get(url)  # warm caches (content types, sessions) before counting
    few, few_sql = _count(client, url)
    PAGES[url](27)
    many, many_sql = _count(client, url)
    assert many == few, (f"{url}: {few} queries for 3 rows, {many} for 30:\n"
                         + "\n".join(many_sql))
    assert few <= MAX_QUERIES, f"{url}: {few} queries\n" + "\n".join(few_sql)
