"""Job handlers for gating models: train (queue gpu) then evaluate (queue cpu)."""
from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.db import transaction

from gating.models import GatingVersion
from training.models import Job
from training.runner import JobCancelled, JobContext, failure_reason, register

log = logging.getLogger(__name__)


def _version_of(job: Job) -> GatingVersion:
    pk = job.params.get("gating_version_id")
    version = GatingVersion.objects.filter(pk=pk).first()
    if version is None:
        raise ValueError(f"job {job.pk} names gating version {pk!r}, which does not exist")
    return version


def _domain_splits(domains, *, with_test: bool):
    from experts.ml.data import DomainData
    from experts.models import DataSplit
    from experts.selectors import domain_rows

    kinds = [DataSplit.Kind.TRAIN, DataSplit.Kind.DEV] + ([DataSplit.Kind.TEST] if with_test
                                                          else [])
    return [
        DomainData(name=d.name, description=d.description, labels=list(d.labels),
                   **{kind: domain_rows(domain=d, kind=kind) for kind in kinds})
        for d in domains
    ]


def _sources(version: GatingVersion):
    from experts.selectors import version_artifact_paths
    from gating.ml.training import ExpertSource

    sources, domains = [], {}
    for member in version.members_in_order():
        ev = member.expert_version
        manifest, weights = version_artifact_paths(ev)
        sources.append(ExpertSource(key=str(ev.pk), domain=ev.expert.domain.name,
                                    manifest=manifest, weights=weights))
        domains.setdefault(ev.expert.domain.name, ev.expert.domain)
    return sources, [domains[name] for name in sorted(domains)]


def _bundle_dir(version: GatingVersion) -> Path:
    return Path(settings.MEDIA_ROOT) / f"gating/v{version.number}-{version.pk}"


def _tell_trainer(version: GatingVersion, message: str) -> None:
    from experts.services import notify

    if version.trained_by is not None:
        notify(user=version.trained_by, message=f"gating v{version.number}: {message}",
               link=version.link)


@Job.settles(Job.Kind.TRAIN_GATING, Job.Kind.EVALUATE)
def _settle(job: Job, status: str, reason: str) -> None:
    """However its job ended, the version says why: a training that wrote no bundle leaves it
    failed (and nothing it wrote behind); a failed evaluation leaves it trained, re-evaluable."""
    version = GatingVersion.objects.filter(pk=job.params.get("gating_version_id")).first()
    if version is None:
        return
    what = "training" if job.kind == Job.Kind.TRAIN_GATING else "evaluation"
    text = (f"{what} was cancelled before it finished" if status == Job.Status.CANCELLED
            else f"{what} did not finish: {reason}")
    if what == "training":
        if not version.mark_failed(text):
            return
        shutil.rmtree(_bundle_dir(version), ignore_errors=True)
    elif not version.mark_evaluation_failed(text):
        return
    _tell_trainer(version, text)


def _stopped(exc: Exception) -> JobCancelled:
    return JobCancelled(f"cancelled at the user's request ({exc})")


@register(Job.Kind.TRAIN_GATING)
def train_gating(job: Job, ctx: JobContext) -> dict:
    """Load the approved experts, train the router(s), write the bundle, queue evaluation."""
    from experts.ml.common import TrainingStopped
    from experts.runtime import worker_backbone, worker_feature_cache
    from gating.ml.bundle import save_bundle
    from gating.ml.training import GatingTrainConfig, load_experts, train_gating
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
        ctx.progress(0, 5, "loading experts", force=True)
        experts = load_experts(sources, fingerprint=backbone.fingerprint, backbone=backbone)
        try:
            result = train_gating(cfg, experts=experts, keys=[s.key for s in sources],
                                  domains=splits, cache=cache, on_progress=ctx.progress,
                                  should_stop=ctx.should_stop)
        except TrainingStopped as exc:
            raise _stopped(exc) from exc
        ctx.check_stop()
        ctx.progress(5, 5, "saving the gating bundle", force=True)
        rel = f"gating/v{version.number}-{version.pk}/bundle.safetensors"
        sha = save_bundle(result.model, Path(settings.MEDIA_ROOT) / rel)
        with transaction.atomic():
            eval_job = job_create(kind=Job.Kind.EVALUATE, user=job.created_by,
                                  params={"gating_version_id": version.pk})
            recorded = version.mark_trained(
                weights=rel, weights_sha256=sha,
                backbone_fingerprint=backbone.fingerprint, split_layer=result.model.spec.depth,
                params=result.model.config,
                label_space=list(result.model.moe.label_space.names),
                training_curves=result.curves, train_metrics=result.metrics, eval_job=eval_job,
            )
            if not recorded:
                raise ValueError(f"gating v{version.number} stopped training meanwhile "
                                 f"(it is {version.status}); the bundle is discarded")
    except BaseException as exc:
        reason = failure_reason(job, exc)
        if version.mark_failed(reason):
            shutil.rmtree(_bundle_dir(version), ignore_errors=True)
            _tell_trainer(version, f"training failed: {reason}")
        raise
    reg = result.metrics["regularized"]
    return {"gating_version": version.pk, "number": version.number,
            "dev_accuracy": reg["dev_accuracy"], "best_epoch": reg["best_epoch"],
            "evaluate_job": eval_job.pk}


def _serving_backend_check(model, backbone, domains) -> dict:
    """The accuracy gate for the configured serving backend on the evaluation rows."""
    from gating.ml.backend_gate import serving_backend_report
    from gating.ml.predictor import fast_cpu_bf16

    return serving_backend_report(
        model, backbone, _domain_splits(domains, with_test=True),
        configured=settings.MOECOLLAB_PREDICT_BACKEND,
        cache_dir=settings.MOECOLLAB_FEATURE_CACHE_DIR,
        threads=int(settings.MOECOLLAB_PREDICT_THREADS), bf16_fast=fast_cpu_bf16())


@register(Job.Kind.EVALUATE)
def evaluate_gating(job: Job, ctx: JobContext) -> dict:
    """Score a trained gating version on the private test splits and store its report."""
    from experts.ml.common import TrainingStopped
    from experts.runtime import worker_backbone, worker_feature_cache
    from gating.ml.bundle import load_bundle
    from gating.ml.evaluate import evaluate_gating

    version = _version_of(job)
    if version.status not in (GatingVersion.Status.TRAINED, GatingVersion.Status.EVALUATED):
        raise ValueError(f"gating v{version.number} is {version.status}; only a trained "
                         "version can be evaluated")
    ctx.progress(0, 1, "loading the gating model", force=True)
    backbone = worker_backbone()
    model = load_bundle(version.weights.path, expected_fingerprint=backbone.fingerprint,
                        backbone=backbone)
    _, domains = _sources(version)
    groups: dict[str, list[str]] = {}
    for member in version.members_in_order():
        owner = member.expert_version.expert.owner_id
        groups.setdefault(str(owner), []).append(str(member.expert_version_id))
    try:
        report = evaluate_gating(model, cache=worker_feature_cache(),
                                 domains=_domain_splits(domains, with_test=True),
                                 on_progress=ctx.progress, should_stop=ctx.should_stop,
                                 credit_groups=groups,
                                 shapley_exact_max=settings.MOECOLLAB_SHAPLEY_EXACT_MAX,
                                 shapley_permutations=settings.MOECOLLAB_SHAPLEY_PERMUTATIONS)
        ctx.progress(0, 1, "checking the serving backend against float32", force=True)
        report["serving_backend"] = _serving_backend_check(model, backbone, domains)
    except TrainingStopped as exc:
        raise _stopped(exc) from exc
    version.mark_evaluated(report=report, eval_job=job)
    return {"gating_version": version.pk, "summary_accuracy": report["summary"]["accuracy"],
            "routing_entropy": report["routing"]["entropy"],
            "utilization": report["routing"]["utilization"]}
