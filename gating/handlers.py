"""Job handlers for gating models: train (queue gpu) then evaluate (queue cpu)."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from gating.models import GatingVersion
from training.models import Job
from training.runner import JobCancelled, JobContext, register

log = logging.getLogger(__name__)


def _version_of(job: Job) -> GatingVersion:
    pk = job.params.get("gating_version_id")
    version = GatingVersion.objects.filter(pk=pk).first()
    if version is None:
        raise ValueError(f"job {job.pk} names gating version {pk!r}, which does not exist")
    return version


def _domain_splits(domains, *, with_test: bool):
    from experts.models import DataSplit
    from experts.selectors import domain_rows
    from gating.ml.pipeline import DomainSplits

    kinds = [DataSplit.Kind.TRAIN, DataSplit.Kind.DEV] + ([DataSplit.Kind.TEST] if with_test
                                                          else [])
    return [
        DomainSplits(name=d.name, labels=list(d.labels),
                     **{kind: domain_rows(domain=d, kind=kind) for kind in kinds})
        for d in domains
    ]


def _sources(version: GatingVersion):
    from experts.selectors import version_artifact_paths
    from gating.ml.pipeline import ExpertSource

    sources, domains = [], {}
    for member in version.members_in_order():
        ev = member.expert_version
        manifest, weights = version_artifact_paths(ev)
        sources.append(ExpertSource(key=str(ev.pk), domain=ev.expert.domain.name,
                                    manifest=manifest, weights=weights))
        domains.setdefault(ev.expert.domain.name, ev.expert.domain)
    return sources, [domains[name] for name in sorted(domains)]


def _stopped(exc: Exception) -> JobCancelled:
    return JobCancelled(f"cancelled at the user's request ({exc})")


@register(Job.Kind.TRAIN_GATING)
def train_gating(job: Job, ctx: JobContext) -> dict:
    """Load the approved experts, train the router(s), write the bundle, queue evaluation."""
    from experts.runtime import worker_backbone, worker_feature_cache
    from gating.ml.pipeline import GatingTrainConfig, save_bundle, train_gating
    from training.ml.common import TrainingStopped
    from training.services import job_create

    version = _version_of(job)
    try:
        ctx.progress(0, 5, "loading the backbone", force=True)
        backbone = worker_backbone()
        cache = worker_feature_cache()
        ctx.check_stop()
        sources, domains = _sources(version)
        fields = {f.name for f in dataclasses.fields(GatingTrainConfig)}
        cfg = GatingTrainConfig(**{k: v for k, v in version.params.items() if k in fields},
                                device=str(backbone.device))
        splits = _domain_splits(domains, with_test=False)
        try:
            result = train_gating(cfg, backbone=backbone, cache=cache, sources=sources,
                                  domains=splits, on_progress=ctx.progress,
                                  should_stop=ctx.should_stop)
        except TrainingStopped as exc:
            raise _stopped(exc) from exc
        ctx.check_stop()
        ctx.progress(5, 5, "saving the gating bundle", force=True)
        rel = f"gating/v{version.number}-{version.pk}/bundle.safetensors"
        sha = save_bundle(result.model, Path(settings.MEDIA_ROOT) / rel)
    except BaseException as exc:
        GatingVersion.objects.filter(pk=version.pk, status=GatingVersion.Status.TRAINING).update(
            status=GatingVersion.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:5000])
        raise
    eval_job = job_create(kind=Job.Kind.EVALUATE, user=job.created_by,
                          params={"gating_version_id": version.pk})
    GatingVersion.objects.filter(pk=version.pk, status=GatingVersion.Status.TRAINING).update(
        status=GatingVersion.Status.TRAINED, weights=rel, weights_sha256=sha,
        backbone_fingerprint=backbone.fingerprint, split_layer=result.model.split_layer,
        params=result.model.config, label_space=list(result.model.moe.label_space.names),
        training_curves=result.curves, train_metrics=result.metrics, trained_at=timezone.now(),
        eval_job=eval_job,
    )
    reg = result.metrics["regularized"]
    return {"gating_version": version.pk, "number": version.number,
            "dev_accuracy": reg["dev_accuracy"], "best_epoch": reg["best_epoch"],
            "evaluate_job": eval_job.pk}


@register(Job.Kind.EVALUATE)
def evaluate_gating(job: Job, ctx: JobContext) -> dict:
    """Score a trained gating version on the private test splits and store its report."""
    from experts.runtime import worker_backbone, worker_feature_cache
    from gating.ml.pipeline import evaluate_gating, load_bundle
    from training.ml.common import TrainingStopped

    version = _version_of(job)
    if version.status not in (GatingVersion.Status.TRAINED, GatingVersion.Status.EVALUATED):
        raise ValueError(f"gating v{version.number} is {version.status}; only a trained "
                         "version can be evaluated")
    ctx.progress(0, 1, "loading the gating model", force=True)
    backbone = worker_backbone()
    model = load_bundle(version.weights.path, expected_fingerprint=backbone.fingerprint)
    _, domains = _sources(version)
    groups: dict[str, list[str]] = {}
    for member in version.members_in_order():
        owner = member.expert_version.expert.owner_id
        groups.setdefault(str(owner), []).append(str(member.expert_version_id))
    try:
        report = evaluate_gating(model, backbone=backbone, cache=worker_feature_cache(),
                                 domains=_domain_splits(domains, with_test=True),
                                 on_progress=ctx.progress, should_stop=ctx.should_stop,
                                 credit_groups=groups)
    except TrainingStopped as exc:
        raise _stopped(exc) from exc
    GatingVersion.objects.filter(pk=version.pk).update(
        report=report, status=GatingVersion.Status.EVALUATED, evaluated_at=timezone.now(),
        eval_job=job,
    )
    return {"gating_version": version.pk, "summary_accuracy": report["summary"]["accuracy"],
            "routing_entropy": report["routing"]["entropy"],
            "utilization": report["routing"]["utilization"]}
