"""Reads for gating models, production and the jobs overview."""
from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from gating.models import GatingMember, GatingVersion, Promotion
from training.models import Job


def gating_version_list() -> QuerySet[GatingVersion]:
    members = GatingMember.objects.select_related("expert_version__expert__owner",
                                                  "expert_version__expert__domain")
    return (GatingVersion.objects.select_related("trained_by", "train_job", "eval_job")
            .prefetch_related(Prefetch("members", queryset=members)))


def gating_version_get(*, pk: int) -> GatingVersion | None:
    return gating_version_list().filter(pk=pk).first()


def production_promotion() -> Promotion | None:
    """The promotion now in force: the latest one not rolled back."""
    return (Promotion.objects.filter(rolled_back=False)
            .select_related("version", "promoted_by").first())


def production_version() -> GatingVersion | None:
    promotion = production_promotion()
    return promotion.version if promotion else None


def production_version_id() -> int | None:
    """Cheap check for servers: which version serves predictions now."""
    return (Promotion.objects.filter(rolled_back=False)
            .values_list("version_id", flat=True).first())


def promotion_history(*, limit: int = 50) -> QuerySet[Promotion]:
    return Promotion.objects.select_related("version", "promoted_by", "rolled_back_by",
                                            "confirmed_worse_by")[:limit]


def previous_production(*, version: GatingVersion) -> GatingVersion | None:
    """What to compare a version with: the production version before it went live, else the
    current production version (when it is not this one)."""
    own = Promotion.objects.filter(version=version).order_by("-at", "-id").first()
    if own is not None:
        before = (Promotion.objects.filter(Q(at__lt=own.at) | Q(at=own.at, id__lt=own.id))
                  .exclude(version=version).select_related("version").first())
        return before.version if before else None
    current = production_version()
    return current if current is not None and current.pk != version.pk else None


def promotion_comparison(*, version: GatingVersion) -> dict | None:
    """The version against production now (gating.ml.stats.compare_reports), None if none."""
    from gating.ml.stats import compare_reports

    current = production_version()
    if current is None or current.pk == version.pk or not version.report or not current.report:
        return None
    out = compare_reports(version.report, current.report)
    out["production_version"] = current.number
    out["candidate_version"] = version.number
    return out


def jobs_overview(*, user) -> dict:
    """Counts for the dashboard: queued and running now, failed since midnight (UTC); the
    jobs themselves only as far as the user may see them (Job.objects.visible_to)."""
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    counts = Job.objects.aggregate(
        queued=Count("id", filter=Q(status=Job.Status.QUEUED)),
        running=Count("id", filter=Q(status=Job.Status.RUNNING)),
        failed_today=Count("id", filter=Q(status=Job.Status.FAILED, finished_at__gte=midnight)),
    )
    recent = (Job.objects.visible_to(user)
              .filter(Q(status__in=[Job.Status.QUEUED, Job.Status.RUNNING])
                      | Q(status=Job.Status.FAILED, finished_at__gte=midnight))
              .select_related("created_by")[:20])
    return {**counts, "jobs": list(recent), "since": midnight,
            "window": timedelta(days=1)}
