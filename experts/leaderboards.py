"""Rebuilding the leaderboards from validation metrics and the production gating model."""
from __future__ import annotations

from collections import defaultdict

from django.db import transaction
from django.utils import timezone

from experts.models import Domain, ExpertVersion, LeaderboardEntry


def production_gating_version():
    """The gating version in production, or None (gating is optional for domain boards)."""
    from gating.models import Promotion

    promotion = Promotion.objects.filter(rolled_back=False).select_related("version").first()
    return promotion.version if promotion else None


def _domain_rows(domain: Domain) -> list[LeaderboardEntry]:
    versions = [v for v in ExpertVersion.objects.filter(
        expert__domain=domain, status=ExpertVersion.Status.APPROVED
    ).select_related("expert__owner") if v.metrics.get("test_accuracy") is not None]
    versions.sort(key=lambda v: (-v.metrics["test_accuracy"],
                                 -v.metrics.get("test_macro_f1", 0.0), v.pk))
    now = timezone.now()
    return [
        LeaderboardEntry(
            board=LeaderboardEntry.Board.DOMAIN, domain=domain, version=v,
            user=v.expert.owner, rank=rank, accuracy=v.metrics["test_accuracy"],
            macro_f1=v.metrics.get("test_macro_f1"), computed_at=now,
            evidence={"kind": "validation", "validation_job": v.training_params.get(
                "validation_job"), "split": v.metrics.get("eval_split"),
                "n_eval": v.metrics.get("n_eval")},
        )
        for rank, v in enumerate(versions, start=1)
    ]


def _contributor_rows(gating) -> list[LeaderboardEntry]:
    report = gating.report or {}
    credit = report.get("credit") or {}
    load = (report.get("routing") or {}).get("load") or {}
    members = gating.members_in_order()
    per_user: dict = defaultdict(lambda: {"credit": 0.0, "share": 0.0, "experts": []})
    users = {}
    for member in members:
        version = member.expert_version
        key = str(version.pk)
        owner = version.expert.owner
        users[owner.pk] = owner
        row = per_user[owner.pk]
        row["credit"] += float(credit.get(key, 0.0))
        row["share"] += float(load.get(key, 0.0))
        row["experts"].append({"version_id": version.pk, "label": version.label,
                               "credit": credit.get(key), "load": load.get(key)})
    by_contributor = report.get("credit_by_contributor") or {}
    for user_pk, row in per_user.items():
        exact = by_contributor.get(str(user_pk))
        if exact is not None:
            row["credit"], row["method"] = float(exact), "leave-contributor-out"
        else:
            row["method"] = "sum of per-expert leave-one-out drops"
    ranked = sorted(per_user.items(), key=lambda kv: (-kv[1]["credit"], -kv[1]["share"], kv[0]))
    now = timezone.now()
    return [
        LeaderboardEntry(
            board=LeaderboardEntry.Board.CONTRIBUTOR, user=users[user_pk], rank=rank,
            credit=row["credit"], routing_share=row["share"], computed_at=now,
            evidence={"kind": "gating", "gating_version": gating.pk,
                      "gating_number": gating.number, "method": row["method"],
                      "experts": row["experts"]},
        )
        for rank, (user_pk, row) in enumerate(ranked, start=1)
    ]


def leaderboards_refresh() -> dict:
    """Replace every leaderboard row in one transaction; readers never see a half-built board."""
    rows: list[LeaderboardEntry] = []
    for domain in Domain.objects.all():
        rows += _domain_rows(domain)
    gating = production_gating_version()
    contributor_rows = _contributor_rows(gating) if gating is not None else []
    with transaction.atomic():
        LeaderboardEntry.objects.all().delete()
        LeaderboardEntry.objects.bulk_create(rows + contributor_rows)
    return {"domain_rows": len(rows), "contributor_rows": len(contributor_rows),
            "gating_version": gating.number if gating else None}
