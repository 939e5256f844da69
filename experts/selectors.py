"""Reads for the marketplace."""
from __future__ import annotations

import json
from pathlib import Path

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from experts.models import (
    DataSplit,
    Domain,
    Expert,
    ExpertRequest,
    ExpertVersion,
    LeaderboardEntry,
    Notification,
)
from moecollab_site.roles import is_maintainer


def domain_list() -> QuerySet[Domain]:
    return Domain.objects.prefetch_related("splits")


def domain_split(*, domain: Domain, kind: str) -> DataSplit | None:
    return DataSplit.objects.filter(domain=domain, kind=kind).first()


def domain_rows(*, domain: Domain, kind: str) -> list[tuple[str, str]]:
    """The (text, label) rows of one split; empty if the domain has no such split."""
    split = domain_split(domain=domain, kind=kind)
    if split is None:
        return []
    rows = []
    with open(split.file.path, encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            rows.append((record["text"], record["label"]))
    return rows


def expert_list(*, user, domain: str | None = None, kind: str | None = None,
                status: str | None = None, contributor: str | None = None,
                text: str | None = None) -> QuerySet[Expert]:
    """Experts with the versions this user may see (ExpertVersion.objects.visible_to) in
    `versions`; the kind and status filters look at those versions only."""
    visible = ExpertVersion.objects.visible_to(user)
    qs = Expert.objects.select_related("owner", "domain").prefetch_related(
        Prefetch("versions", queryset=visible))
    if domain:
        qs = qs.filter(domain__name=domain)
    if kind:
        qs = qs.filter(Exists(visible.filter(expert=OuterRef("pk"), kind=kind)))
    if status:
        qs = qs.filter(Exists(visible.filter(expert=OuterRef("pk"), status=status)))
    if contributor:
        qs = qs.filter(owner__username=contributor)
    if text:
        qs = qs.filter(Q(name__icontains=text) | Q(description__icontains=text)
                       | Q(domain__name__icontains=text))
    return qs.distinct()


def expert_versions_approved(*, domains: list[str] | None = None) -> QuerySet[ExpertVersion]:
    """Versions that may go into a gating model."""
    qs = ExpertVersion.objects.filter(status=ExpertVersion.Status.APPROVED).select_related(
        "expert__owner", "expert__domain"
    )
    if domains:
        qs = qs.filter(expert__domain__name__in=domains)
    return qs.order_by("expert__domain__name", "expert_id", "number")


def version_artifact_paths(version: ExpertVersion) -> tuple[Path, Path]:
    """Where a version's manifest and weights live on disk (workers only open these)."""
    return Path(version.manifest_file.path), Path(version.weights.path)


def best_version_for_domain(*, domain: Domain,
                            exclude: ExpertVersion | None = None) -> ExpertVersion | None:
    """The approved version with the highest private-test accuracy in a domain."""
    qs = ExpertVersion.objects.filter(expert__domain=domain,
                                      status=ExpertVersion.Status.APPROVED)
    if exclude is not None:
        qs = qs.exclude(pk=exclude.pk)
    best = None
    for version in qs.select_related("expert__owner"):
        acc = version.metrics.get("test_accuracy")
        if acc is not None and (best is None or acc > best.metrics["test_accuracy"]):
            best = version
    return best


def review_queue() -> QuerySet[ExpertVersion]:
    return ExpertVersion.objects.filter(
        status=ExpertVersion.Status.AWAITING_REVIEW
    ).select_related("expert__owner", "expert__domain").order_by("created_at")


def can_see_private_data(user) -> bool:
    return is_maintainer(user)


def notifications_for(*, user) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user)


def request_list(*, user, status: str | None = None) -> QuerySet[ExpertRequest]:
    """Requests with the answering versions this user may see in `answers`."""
    visible = ExpertVersion.objects.visible_to(user).select_related("expert__owner")
    qs = ExpertRequest.objects.select_related("author", "domain", "closed_by").prefetch_related(
        Prefetch("answers", queryset=visible))
    if status:
        qs = qs.filter(status=status)
    return qs


def leaderboard_domain(*, domain: Domain) -> QuerySet[LeaderboardEntry]:
    return LeaderboardEntry.objects.filter(
        board=LeaderboardEntry.Board.DOMAIN, domain=domain
    ).select_related("version__expert__owner", "user").order_by("rank")


def leaderboard_domains(*, top: int | None = None
                        ) -> list[tuple[Domain, list[LeaderboardEntry]]]:
    """Every domain with its board (possibly empty, the first `top` ranks), in two queries."""
    rows: dict[int, list[LeaderboardEntry]] = {}
    entries = LeaderboardEntry.objects.filter(board=LeaderboardEntry.Board.DOMAIN)
    if top is not None:
        entries = entries.filter(rank__lte=top)
    for entry in entries.select_related(
            "version__expert__owner", "user").order_by("domain_id", "rank"):
        rows.setdefault(entry.domain_id, []).append(entry)
    return [(domain, rows.get(domain.pk, [])) for domain in Domain.objects.all()]


def leaderboard_contributors() -> QuerySet[LeaderboardEntry]:
    return LeaderboardEntry.objects.filter(
        board=LeaderboardEntry.Board.CONTRIBUTOR
    ).select_related("user").order_by("rank")


def versions_visible(*, user, expert: Expert) -> QuerySet[ExpertVersion]:
    """The versions of an expert this user may see (ExpertVersion.objects.visible_to)."""
    return expert.versions.visible_to(user).prefetch_related("comments__author")


def version_get(*, user, expert: Expert, number: int) -> ExpertVersion | None:
    return versions_visible(user=user, expert=expert).filter(number=number).first()


def platform_description() -> dict:
    """What an uploaded artifact is checked against: the backbone and the size caps (the
    command line's `inspect` runs the same checks offline against this)."""
    from django.conf import settings

    from experts.ml.upload_checks import MAX_MANIFEST_BYTES
    from experts.uploads import platform_backbone

    return {"backbone": platform_backbone(),
            "upload_max_bytes": settings.MOECOLLAB_UPLOAD_MAX_BYTES,
            "manifest_max_bytes": MAX_MANIFEST_BYTES}


CHECK_PLACES = {"upload": "on upload", "worker": "in the validation job"}


def version_checks(*, version: ExpertVersion) -> list[dict]:
    """Each check once, though most run twice (the web process on upload, the worker again):
    it failed if any run failed, and then shows the failing run's message."""
    merged: dict[str, dict] = {}
    for check in version.checks or []:
        name = check.get("name", "")
        where = CHECK_PLACES.get(check.get("where"), check.get("where") or "on upload")
        row = merged.setdefault(name, {"name": name, "ok": True, "places": [], "message": ""})
        if where not in row["places"]:
            row["places"].append(where)
        if row["ok"]:  # the first failure's message stays; else the latest run's says most
            row["message"] = check.get("message", "")
        if not check.get("ok"):
            row["ok"] = False
    for row in merged.values():
        row["where"] = " and ".join(row["places"])
    return list(merged.values())


def version_production(*, version: ExpertVersion):
    """The production gating version, and whether this expert version is one of its members."""
    from experts.leaderboards import production_gating_version

    gating = production_gating_version()
    member = gating is not None and gating.members.filter(expert_version=version).exists()
    return gating, member


def version_credit(*, version: ExpertVersion) -> dict | None:
    """This version's Shapley credit (with its interval, leave-one-out beside it) as the
    contributor board recorded it for the production model; None when it has none."""
    entries = LeaderboardEntry.objects.filter(board=LeaderboardEntry.Board.CONTRIBUTOR,
                                              user_id=version.expert.owner_id)
    for entry in entries:
        for row in entry.evidence.get("experts") or []:
            if row.get("version_id") == version.pk and row.get("credit") is not None:
                return {**row, "method": entry.evidence.get("method"),
                        "gating_number": entry.evidence.get("gating_number")}
    return None
