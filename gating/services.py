"""Writes for gating models: start training, promote to production, roll back."""
from __future__ import annotations

import math

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from experts.models import DataSplit, ExpertVersion
from experts.selectors import expert_versions_approved
from gating import selectors
from gating.ml.mixes import MIXES
from gating.models import GatingMember, GatingVersion, Promotion
from moecollab_site.errors import DomainError, duplicate
from moecollab_site.roles import require_maintainer
from training.models import Job
from training.services import job_create

# name -> (type, low, high): what a maintainer may set when starting training. Ranges keep a
# typo from asking a worker for a week of training or a router that cannot learn.
TRAIN_PARAMS: dict[str, tuple[type, float, float]] = {
    "top_k": (int, 1, 64),
    "temperature": (float, 0.05, 20.0),
    "noise_std": (float, 0.0, 10.0),
    "mlp_hidden": (int, 0, 4096),
    "lambda_bal": (float, 0.0, 10.0),
    "lambda_z": (float, 0.0, 10.0),
    "lambda_h": (float, 0.0, 10.0),
    "epochs": (int, 1, 1000),
    "lr": (float, 1e-6, 1.0),
    "batch_size": (int, 1, 8192),
    "patience": (int, 1, 1000),
    "seed": (int, 0, 2**31 - 1),
    "samples_per_domain": (int, 1, 1_000_000),
    "max_train_per_domain": (int, 10, 10_000_000),
    "compare_unregularized": (bool, 0, 1),
    "router_surface_buckets": (int, 0, 1 << 22),  # 0 = the router reads trunk features only
    "mix": (str, 0, 0),  # one of gating.ml.mixes.MIXES
}


def gating_params_clean(params: dict | None) -> dict:
    """Checked hyperparameters; every refusal names the field and the allowed range."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(TRAIN_PARAMS))
    if unknown:
        raise DomainError(f"unknown parameter(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(TRAIN_PARAMS)}", code="invalid_params")
    clean = {}
    for name, value in params.items():
        kind, low, high = TRAIN_PARAMS[name]
        if value is None and name in ("samples_per_domain", "max_train_per_domain"):
            clean[name] = None
            continue
        if kind is str:
            if value not in MIXES:
                raise DomainError(f"{name} must be one of {', '.join(MIXES)}, got {value!r}",
                                  code="invalid_params")
            clean[name] = value
            continue
        if kind is bool:
            if not isinstance(value, bool):
                raise DomainError(f"{name} must be true or false", code="invalid_params")
            clean[name] = value
            continue
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int and ok_type and float(value).is_integer():
            value = int(value)
        if not ok_type or (kind is int and not isinstance(value, int)) or not math.isfinite(
            value
        ) or not low <= value <= high:
            what = "an integer" if kind is int else "a number"
            raise DomainError(f"{name} must be {what} in {low:g}..{high:g}, got {value!r}",
                              code="invalid_params")
        clean[name] = kind(value)
    return clean


def _pick_versions(expert_version_ids: list[int] | None) -> list[ExpertVersion]:
    if expert_version_ids is None:
        return list(expert_versions_approved())
    ids = list(dict.fromkeys(expert_version_ids))
    found = {v.pk: v for v in ExpertVersion.objects.filter(pk__in=ids).select_related(
        "expert__owner", "expert__domain")}
    missing = [i for i in ids if i not in found]
    if missing:
        raise DomainError(f"expert version(s) {', '.join(map(str, missing))} do not exist",
                          code="unknown_expert_version")
    not_approved = [f"{found[i].label} ({found[i].status})" for i in ids
                    if found[i].status != ExpertVersion.Status.APPROVED]
    if not_approved:
        raise DomainError("only approved expert versions can be combined; not approved: "
                          + ", ".join(not_approved), code="not_approved")
    return [found[i] for i in ids]


def _check_versions(versions: list[ExpertVersion], params: dict) -> None:
    if not versions:
        raise DomainError("there are no approved experts to combine; approve at least two "
                          "expert versions first", code="no_experts")
    # A mixture of one expert routes nothing: entropy, utilisation and leave-one-out credit
    # are all meaningless, so it is refused rather than trained.
    if len(versions) < 2:
        raise DomainError(f"a gating model needs at least 2 experts to route between; got 1 "
                          f"({versions[0].label})", code="too_few_experts")
    fingerprints: dict[str, list[str]] = {}
    for v in versions:
        fingerprints.setdefault(v.backbone_fingerprint or "(unknown)", []).append(v.label)
    if len(fingerprints) > 1:
        detail = "; ".join(f"{fp[:12]}: {', '.join(labels)}" for fp, labels in
                           fingerprints.items())
        raise DomainError(f"the experts are built on different backbones ({detail}); choose "
                          "experts of one backbone", code="mixed_backbones")
    domains = {v.expert.domain for v in versions}
    with_train = set(DataSplit.objects.filter(domain__in=domains, kind=DataSplit.Kind.TRAIN)
                     .values_list("domain__name", flat=True))
    missing = sorted(d.name for d in domains if d.name not in with_train)
    if missing:
        raise DomainError(f"domain(s) {', '.join(missing)} have no train split; upload one "
                          "before training a gating model", code="no_train_split")
    top_k = params.get("top_k", 1)
    if top_k > len(versions):
        raise DomainError(f"top_k is {top_k} but only {len(versions)} experts are combined",
                          code="invalid_params")


def _effective_params(params: dict, defaults: dict) -> dict:
    """The settings a training runs with: what was asked, the engine's defaults for the rest."""
    return {**defaults, **{k: v for k, v in params.items() if k in TRAIN_PARAMS}}


def gating_version_identical(*, versions: list[ExpertVersion],
                             params: dict) -> GatingVersion | None:
    """A gating version that did, or is doing, exactly this training: the same expert
    versions, the same settings (defaults filled in, so leaving one out equals sending its
    default) and the same backbone. Failed ones do not count: trying again is the point.

    Training is deterministic (seeded), so a second identical run would only make a copy.
    """
    import dataclasses

    from gating.ml.training import GatingTrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(GatingTrainConfig)
                if f.name in TRAIN_PARAMS}
    wanted = _effective_params(params, defaults)
    ids = {v.pk for v in versions}
    candidates = (GatingVersion.objects
                  .filter(backbone_fingerprint=versions[0].backbone_fingerprint,
                          members__expert_version_id=versions[0].pk)
                  .exclude(status=GatingVersion.Status.FAILED)
                  .select_related("train_job").prefetch_related("members").distinct())
    for candidate in candidates:
        if candidate.display_status == GatingVersion.Status.FAILED:
            continue
        if {m.expert_version_id for m in candidate.members.all()} != ids:
            continue
        if _effective_params(candidate.params, defaults) == wanted:
            return candidate
    return None


def _refuse_identical(versions: list[ExpertVersion], params: dict) -> None:
    twin = gating_version_identical(versions=versions, params=params)
    if twin is None:
        return
    state = {"training": "still training", "trained": "trained, being evaluated",
             "evaluated": "trained and evaluated"}.get(twin.display_status, twin.display_status)
    # 409 "duplicate", as for an expert upload with identical weights: the request conflicts
    # with what exists, and the message names it.
    raise duplicate(
        f"an identical gating model exists: gating v{twin.number} ({state}) combines the same "
        f"{len(versions)} expert versions with the same settings on the same backbone, so "
        f"nothing new was started. See it at {twin.link}; to train a different one, change "
        "the experts or a setting (another seed gives another router)", link=twin.link)


def gating_train_start(*, user, expert_version_ids: list[int] | None = None,
                       params: dict | None = None) -> Job:
    """Create a gating version (status training) and queue its training job, or refuse
    (an identical one exists: 409 naming it)."""
    require_maintainer(user, "train gating models")
    clean = gating_params_clean(params)
    versions = _pick_versions(expert_version_ids)
    _check_versions(versions, clean)
    with transaction.atomic():
        # Lock the member rows first: two identical starts at the same instant then take
        # turns, and the second sees the first's version (SQLite's BEGIN IMMEDIATE already
        # serialises the block). Different starts collide only on the unique number; the
        # second gets an error and retries, which beats locking the table on every start.
        list(ExpertVersion.objects.select_for_update().filter(
            pk__in=[v.pk for v in versions]).order_by("pk").values_list("pk", flat=True))
        _refuse_identical(versions, clean)
        number = (GatingVersion.objects.aggregate(n=Max("number"))["n"] or 0) + 1
        version = GatingVersion.objects.create(
            number=number, params=clean, trained_by=user,
            backbone_fingerprint=versions[0].backbone_fingerprint,
        )
        GatingMember.objects.bulk_create(
            GatingMember(version=version, expert_version=v, position=i)
            for i, v in enumerate(versions)
        )
        job = job_create(kind=Job.Kind.TRAIN_GATING, user=user,
                         params={"gating_version_id": version.pk})
        version.train_job = job
        version.save(update_fields=["train_job"])
    return job


def _refresh_leaderboards(*, user, reason: str, version: GatingVersion | None) -> Job:
    return job_create(kind=Job.Kind.REFRESH_LEADERBOARDS, user=user,
                      params={"reason": reason,
                              "gating_version_id": version.pk if version else None})


def _worse_message(version: GatingVersion, comparison: dict) -> str:
    s = comparison["summary"]
    interval = s.get("interval")
    ci = (f", paired 95 % interval [{interval[0]:+.4f}, {interval[1]:+.4f}]"
          if interval else " (not evaluated on the same rows: no paired interval)")
    return (f"gating v{version.number} scores {s['candidate']:.4f} summary accuracy against "
            f"{s['production']:.4f} for production v{comparison['production_version']} "
            f"(difference {s['difference']:+.4f}{ci}); confirm to promote a worse model")


def gating_promote(*, version: GatingVersion, user, confirm_worse: bool = False) -> Promotion:
    """Put an evaluated version into production and refresh the leaderboards.

    A version scoring below production needs confirm_worse; the promotion records who confirmed.
    """
    require_maintainer(user, "promote gating models")
    with transaction.atomic():
        version = GatingVersion.objects.select_for_update().get(pk=version.pk)
        if version.status != GatingVersion.Status.EVALUATED:
            raise DomainError(f"gating v{version.number} is {version.display_status}; only an "
                              "evaluated version can be promoted", code="not_evaluated",
                              status_code=409)
        current = selectors.production_promotion()
        if current is not None and current.version_id == version.pk:
            raise DomainError(f"gating v{version.number} is already in production",
                              code="already_production", status_code=409)
        from gating.ml.backend_gate import promotion_refusal

        refusal = promotion_refusal((version.report or {}).get("serving_backend"))
        if refusal is not None:
            raise DomainError(f"gating v{version.number} cannot be promoted: {refusal}",
                              code="serving_backend_rejected", status_code=409)
        comparison = selectors.promotion_comparison(version=version) or {}
        worse = bool(comparison.get("worse"))
        if worse and not confirm_worse:
            raise DomainError(_worse_message(version, comparison), code="worse_than_production",
                              status_code=409)
        promotion = Promotion.objects.create(
            version=version, promoted_by=user, comparison=comparison,
            confirmed_worse_by=user if worse else None)
        _refresh_leaderboards(user=user, reason="promotion", version=version)
    return promotion


def gating_rollback(*, user) -> Promotion | None:
    """Undo the latest promotion; production returns to the version before it (or to none)."""
    require_maintainer(user, "roll back production")
    with transaction.atomic():
        current = (Promotion.objects.select_for_update().filter(rolled_back=False)
                   .select_related("version").first())
        if current is None:
            raise DomainError("no gating model is in production; nothing to roll back",
                              code="no_production", status_code=409)
        current.rolled_back = True
        current.rolled_back_by = user
        current.rolled_back_at = timezone.now()
        current.save(update_fields=["rolled_back", "rolled_back_by", "rolled_back_at"])
        restored = selectors.production_promotion()
        _refresh_leaderboards(user=user, reason="rollback",
                              version=restored.version if restored else None)
    return restored
