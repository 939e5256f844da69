"""Job handlers of the marketplace: validate a version, train one from a dataset, leaderboards."""
from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction

from experts import selectors, services
from experts.models import DataSplit, ExpertVersion
from moecollab_site.errors import DUPLICATE, DomainError
from training.models import Job
from training.runner import JobCancelled, JobContext, failure_reason, register


@contextlib.contextmanager
def _version_fails_with_job(job: Job, version: ExpertVersion, *, what: str):
    """If the handler dies, the version must not stay 'validating' or 'training'.

    A cancel, seen by the runner's stop check (JobCancelled) or inside the ML core
    (TrainingStopped), leaves the version cancelled and ends the job cancelled, not failed.
    """
    from experts.ml.common import TrainingStopped

    try:
        yield
    except (JobCancelled, TrainingStopped) as exc:
        _mark_cancelled(version, f"{what} was cancelled before it finished")
        if isinstance(exc, TrainingStopped):
            raise JobCancelled(f"cancelled at the user's request ({exc})") from exc
        raise
    except Exception as exc:
        _mark_invalid(version, f"{what} failed: {failure_reason(job, exc)}")
        raise


def _mark_invalid(version: ExpertVersion, error: str) -> None:
    if version.mark_invalid(error):
        services.notify(user=version.expert.owner,
                        message=f"{version.label} failed: {error[:200]}",
                        link=services.version_link(version))


def _mark_cancelled(version: ExpertVersion, reason: str) -> None:
    if version.mark_cancelled(reason):
        services.notify(user=version.expert.owner, message=f"{version.label}: {reason}",
                        link=services.version_link(version))


@Job.settles(Job.Kind.VALIDATE_EXPERT, Job.Kind.TRAIN_EXPERT)
def _settle_version(job: Job, status: str, reason: str) -> None:
    """However its job ended (killed worker, sweep, time limit, cancel), the version says so."""
    version = ExpertVersion.objects.select_related("expert__owner").filter(
        pk=job.params.get("version_id")).first()
    if version is None:
        return
    what = "training" if job.kind == Job.Kind.TRAIN_EXPERT else "validation"
    if what == "validation" and version.training_params.get("validation_job") not in (
            None, job.pk):
        return  # a newer validation job owns the version now
    if status == Job.Status.CANCELLED:
        _mark_cancelled(version, f"{what} was cancelled before it finished")
    else:
        _mark_invalid(version, f"{what} did not finish: {reason}")


def _version(job: Job) -> ExpertVersion:
    return ExpertVersion.objects.select_related("expert__domain", "expert__owner").get(
        pk=job.params["version_id"])


@register(Job.Kind.VALIDATE_EXPERT)
def validate_expert(job: Job, ctx: JobContext) -> dict:
    """Every artifact check, a smoke forward pass, then accuracy on the private test split."""
    from experts.ml.artifact import inspect_and_load
    from experts.runtime import worker_backbone, worker_feature_cache
    from experts.uploads import platform_backbone
    from training.ml.scoring import OUTPUT_CHECK, score_expert

    version = _version(job)
    with _version_fails_with_job(job, version, what="validation"):
        ctx.progress(0, 3, "checking the artifact")
        backbone = worker_backbone()
        manifest_path, weights_path = selectors.version_artifact_paths(version)
        # One pass: the checks build and run the expert, which is then scored.
        checks, module, _ = inspect_and_load(manifest_path, weights_path,
                                             platform=platform_backbone(),
                                             max_bytes=settings.MOECOLLAB_UPLOAD_MAX_BYTES,
                                             backbone=backbone)
        recorded = [c for c in version.checks if c.get("where") == "upload"]
        recorded += [{"name": c.name, "ok": c.ok, "message": c.message, "where": "worker"}
                     for c in checks]
        ExpertVersion.objects.filter(pk=version.pk).update(checks=recorded)
        failed = next((c for c in checks if not c.ok), None)
        if failed is not None:
            _mark_invalid(version, f"{failed.name}: {failed.message}")
            return {"valid": False, "failed_check": failed.name, "reason": failed.message}
        ctx.check_stop()
        module.to(backbone.device)
        domain = version.expert.domain
        split = DataSplit.Kind.TEST
        rows = selectors.domain_rows(domain=domain, kind=split)
        if not rows:
            split = DataSplit.Kind.DEV
            rows = selectors.domain_rows(domain=domain, kind=split)
        metrics: dict = {}
        if rows:
            ctx.progress(1, 3, f"scoring on {len(rows)} {split} examples")
            scores = score_expert(module, rows, cache=worker_feature_cache())
            # The smoke pass feeds one made-up input; the domain's own texts must give sane
            # logits too, or the expert poisons every gating training it joins.
            problem = scores["problem"]
            recorded.append({"name": OUTPUT_CHECK, "ok": problem is None, "where": "worker",
                             "message": problem or f"finite, input-dependent logits on "
                                                   f"{scores['n']} {split} examples"})
            ExpertVersion.objects.filter(pk=version.pk).update(checks=recorded)
            if problem is not None:
                _mark_invalid(version, f"{OUTPUT_CHECK}: {problem}")
                return {"valid": False, "failed_check": OUTPUT_CHECK, "reason": problem}
            metrics = {"test_accuracy": scores["accuracy"], "test_macro_f1": scores["macro_f1"],
                       "n_eval": scores["n"], "eval_split": split}
        ctx.progress(2, 3, "recording the result")
        version.mark_awaiting_review(metrics=metrics)
        summary = (f"accuracy {metrics['test_accuracy']:.3f} on {metrics['n_eval']} "
                   f"{split} examples" if metrics else "no evaluation split in this domain")
        services.notify(user=version.expert.owner,
                        message=f"{version.label} passed validation ({summary}); "
                                "awaiting review",
                        link=services.version_link(version))
        ctx.progress(3, 3, "validated")
    return {"valid": True, **metrics}


@register(Job.Kind.TRAIN_EXPERT)
def train_expert(job: Job, ctx: JobContext) -> dict:
    """Train a version on the contributor's dataset, store its artifact, queue validation."""
    from experts.ml.artifact import save_expert
    from experts.ml.data import DomainData
    from experts.ml.lora import save_lora_artifact
    from experts.runtime import worker_backbone, worker_feature_cache
    from training.ml.expert_train import ExpertTrainConfig
    from training.ml.expert_train import train_expert as train

    version = _version(job)
    with _version_fails_with_job(job, version, what="training"):
        params = version.training_params
        domain = version.expert.domain
        with default_storage.open(params["dataset"], "rb") as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        rows = [(r["text"], r["label"]) for r in records]
        dev = selectors.domain_rows(domain=domain, kind=DataSplit.Kind.DEV)
        data = DomainData(name=domain.name, description=domain.description,
                          labels=list(domain.labels), train=rows, dev=dev)
        rows, dev = data.dev_or_held_out()
        dev_note = ("the domain's dev split" if data.dev
                    else f"{len(dev)} rows held out from the dataset")
        data = DomainData(name=domain.name, description=domain.description,
                          labels=list(domain.labels), train=rows, dev=dev)
        cfg = ExpertTrainConfig(kind=params.get("kind", "head"), epochs=params.get("epochs"),
                                device=settings.MOECOLLAB_DEVICE)
        ctx.log(f"training a {cfg.kind} expert on {len(rows)} rows; dev = {dev_note}")
        trained = train(cfg, backbone=worker_backbone(), cache=worker_feature_cache(),
                        domain=data, on_progress=lambda c, t, m="": ctx.progress(c, t, m),
                        should_stop=ctx.should_stop)
        ctx.check_stop()
        save = save_lora_artifact if cfg.kind == "lora" else save_expert
        with tempfile.TemporaryDirectory() as tmp:
            out = save(trained.expert, Path(tmp), backbone=worker_backbone(),
                              training={**trained.training, "dev": dev_note,
                                        "trained_by": "platform"},
                              metrics=trained.metrics,
                              extra={"name": version.expert.name,
                                     "description": version.expert.description[:1000]})
            manifest_bytes = (out / "manifest.json").read_bytes()
            weights_bytes = (out / ("adapter_model.safetensors" if cfg.kind == "lora"
                                    else "weights.safetensors")).read_bytes()
        sha = hashlib.sha256(weights_bytes).hexdigest()
        metrics = {k: v for k, v in trained.metrics.items() if isinstance(v, (int, float))}
        twin = _twin(sha, version)
        if twin is None:
            try:
                with transaction.atomic():
                    services.version_store(
                        expert=version.expert, manifest=json.loads(manifest_bytes),
                        manifest_bytes=manifest_bytes, weights_bytes=weights_bytes, sha256=sha,
                        request=None, checks=[], user=job.created_by, version=version,
                        source=ExpertVersion.Source.PLATFORM)
            except DomainError as exc:
                # The same weights were stored between the look-up and the write.
                twin = _twin(sha, version) if exc.code == DUPLICATE else None
                if twin is None:
                    raise
        if twin is not None:
            return {**metrics, **_reproduced(job, ctx, version, twin, sha)}
    return metrics


def _twin(sha256: str, version: ExpertVersion) -> ExpertVersion | None:
    return (ExpertVersion.objects.filter(weights_sha256=sha256).exclude(pk=version.pk)
            .select_related("expert__owner").first())


def _reproduced(job: Job, ctx: JobContext, version: ExpertVersion, twin: ExpertVersion,
                sha256: str) -> dict:
    """Training reproduced an existing version bit for bit (training is deterministic, so the
    same dataset and settings give the same weights): nothing new is stored.

    The job succeeds, pointing at the existing version: the work asked for was done and its
    result exists; failing would say something went wrong when nothing did. The placeholder
    version ends cancelled with the reason, since versions are immutable and weights unique.
    """
    link = services.version_link(twin) if twin.is_visible_to(job.created_by) else ""
    reason = (f"training reproduced {twin.label} exactly (identical weights, sha256 "
              f"{sha256[:12]}…); nothing new was created, so {version.label} is not kept. "
              f"Use {twin.label}, or train with other data or settings for a different expert")
    version.mark_cancelled(reason)
    services.notify(user=version.expert.owner, message=f"{version.label}: {reason}",
                    link=link or services.version_link(version))
    ctx.progress(1, 1, f"identical to {twin.label}; nothing new was created", force=True)
    return {"outcome": reason, "existing_version": twin.label, "existing_version_link": link}


@register(Job.Kind.REFRESH_LEADERBOARDS)
def refresh_leaderboards(job: Job, ctx: JobContext) -> dict:
    from experts.leaderboards import leaderboards_refresh

    ctx.progress(0, 1, "ranking")
    counts = leaderboards_refresh()
    ctx.progress(1, 1, "done")
    return counts
