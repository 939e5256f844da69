"""Rebuilding the leaderboards from validation metrics and the production gating model."""
from __future__ import annotations

from collections import defaultdict

from django.db import transaction
from django.utils import timezone

from experts.models import Domain, ExpertVersion, LeaderboardEntry
from gating.ml.stats import accuracy_interval, intervals_overlap


def production_gating_version():
    """The gating version in production, or None (gating is optional for domain boards)."""
    from gating.models import Promotion

    promotion = Promotion.objects.filter(rolled_back=False).select_related("version").first()
    return promotion.version if promotion else None


def _mark_ties(rows: list[LeaderboardEntry], key: str) -> list[LeaderboardEntry]:
    """evidence["tie"]: the row's interval overlaps the row ranked just above or below it."""
    for i, row in enumerate(rows):
        here = row.evidence.get(key)
        row.evidence["tie"] = any(
            intervals_overlap(here, rows[j].evidence.get(key))
            for j in (i - 1, i + 1) if 0 <= j < len(rows))
    return rows


def _wilson_of(accuracy: float, n) -> list[float] | None:
    return accuracy_interval(accuracy, int(n)) if n else None


def _domain_rows(domain: Domain) -> list[LeaderboardEntry]:
    versions = [v for v in ExpertVersion.objects.filter(
        expert__domain=domain, status=ExpertVersion.Status.APPROVED
    ).select_related("expert__owner") if v.metrics.get("test_accuracy") is not None]
    versions.sort(key=lambda v: (-v.metrics["test_accuracy"],
                                 -v.metrics.get("test_macro_f1", 0.0), v.pk))
    now = timezone.now()
    return _mark_ties([
        LeaderboardEntry(
            board=LeaderboardEntry.Board.DOMAIN, domain=domain, version=v,
            user=v.expert.owner, rank=rank, accuracy=v.metrics["test_accuracy"],
            macro_f1=v.metrics.get("test_macro_f1"), computed_at=now,
            evidence={"kind": "validation", "validation_job": v.training_params.get(
                "validation_job"), "split": v.metrics.get("eval_split"),
                "n_eval": v.metrics.get("n_eval"),
                "interval": _wilson_of(v.metrics["test_accuracy"], v.metrics.get("n_eval"))},
        )
        for rank, v in enumerate(versions, start=1)
    ], "interval")


def _contributor_rows(gating) -> list[LeaderboardEntry]:
    """Contributors by Shapley credit (sum over their experts); leave-one-out shown beside it.

    Reports from before Shapley credit rank by the leave-one-out drop and say so.
    """
    report = gating.report or {}
    loo = report.get("credit") or {}
    shapley = report.get("shapley")
    credit = shapley if shapley is not None else loo
    ci = report.get("shapley_ci95") or {}
    load = (report.get("routing") or {}).get("load") or {}
    members = gating.members_in_order()
    per_user: dict = defaultdict(lambda: {"credit": 0.0, "share": 0.0, "loo": 0.0,
                                          "experts": []})
    users = {}
    for member in members:
        version = member.expert_version
        key = str(version.pk)
        owner = version.expert.owner
        users[owner.pk] = owner
        row = per_user[owner.pk]
        row["credit"] += float(credit.get(key, 0.0))
        row["loo"] += float(loo.get(key, 0.0))
        row["share"] += float(load.get(key, 0.0))
        row["experts"].append({"version_id": version.pk, "label": version.label,
                               "credit": credit.get(key), "credit_ci95": ci.get(key),
                               "leave_one_out": loo.get(key), "load": load.get(key)})
    loo_by = report.get("credit_by_contributor") or {}
    sh_by = report.get("shapley_by_contributor") or {}
    sh_by_ci = report.get("shapley_by_contributor_ci95") or {}
    how = (report.get("shapley_method") or {}).get("method")
    for user_pk, row in per_user.items():
        if str(user_pk) in loo_by:
            row["loo"] = float(loo_by[str(user_pk)])
        if shapley is None:
            row["method"] = "leave-one-out (this report has no Shapley values)"
            row["ci95"] = None
            continue
        if str(user_pk) in sh_by:
            row["credit"] = float(sh_by[str(user_pk)])
        row["ci95"] = sh_by_ci.get(str(user_pk))
        row["method"] = f"Shapley value ({how or 'exact'})"
    ranked = sorted(per_user.items(), key=lambda kv: (-kv[1]["credit"], -kv[1]["share"], kv[0]))
    now = timezone.now()
    return _mark_ties([
        LeaderboardEntry(
            board=LeaderboardEntry.Board.CONTRIBUTOR, user=users[user_pk], rank=rank,
            credit=row["credit"], routing_share=row["share"], computed_at=now,
            evidence={"kind": "gating", "gating_version": gating.pk,
                      "gating_number": gating.number, "method": row["method"],
                      "credit_ci95": row["ci95"], "leave_one_out": row["loo"],
                      "experts": row["experts"]},
        )
        for rank, (user_pk, row) in enumerate(ranked, start=1)
    ], "credit_ci95")


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
