"""Build a small production gating model from domain folders, in this process (no worker).

For a demo or a performance measurement on an empty installation: imports the domains, trains
one head expert per domain on a capped train split, approves it, trains and evaluates a gating
model through the same job handlers the workers run, and promotes it.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand, CommandError

from experts.models import Expert, ExpertVersion
from gating import services
from gating.models import GatingVersion
from moecollab_site.api import DomainError
from moecollab_site.roles import MAINTAINER, user_add_role
from training.models import Job
from training.runner import run_job


class Command(BaseCommand):
    help = "Train, evaluate and promote a demo gating model from domain folders."

    def add_arguments(self, parser):
        default = settings.MOECOLLAB_DATA_DIR or str(settings.BASE_DIR.parent / "shared" / "data")
        parser.add_argument("--data-dir", type=Path, default=Path(default))
        parser.add_argument("--max-train", type=int, default=2000,
                            help="train rows per domain for experts and router")
        parser.add_argument("--username", default="demo-maintainer")

    def handle(self, *args, data_dir: Path, max_train: int, username: str, **options):
        from experts.ml.artifact import MANIFEST_NAME, WEIGHTS_NAME, save_expert
        from experts.runtime import worker_backbone, worker_feature_cache
        from experts.services import domain_import_folder
        from training.ml.data import load_domain_dir
        from training.ml.expert_train import ExpertTrainConfig, train_expert

        folders = sorted(p for p in data_dir.iterdir() if (p / "domain.json").is_file())
        if len(folders) < 2:
            raise CommandError(f"need at least 2 domain folders in {data_dir}")
        user, _ = User.objects.get_or_create(username=username)
        user_add_role(user=user, role=MAINTAINER)
        backbone, cache = worker_backbone(), worker_feature_cache()
        scratch = Path(settings.VAR_DIR) / "gating-demo"
        for folder in folders:
            domain = domain_import_folder(path=folder)
            expert, _ = Expert.objects.get_or_create(owner=user, domain=domain,
                                                     name=f"{domain.name}-demo-head")
            if expert.versions.filter(status=ExpertVersion.Status.APPROVED).exists():
                continue
            data = load_domain_dir(folder, max_train=max_train)
            trained = train_expert(ExpertTrainConfig(kind="head", max_train=max_train),
                                   backbone=backbone, cache=cache, domain=data)
            out = save_expert(trained.expert, scratch / domain.name, backbone=backbone,
                              training=trained.training, metrics=trained.metrics)
            manifest = (out / MANIFEST_NAME).read_bytes()
            version = ExpertVersion(
                expert=expert, number=expert.versions.count() + 1,
                status=ExpertVersion.Status.APPROVED, source=ExpertVersion.Source.PLATFORM,
                kind="head", manifest=json.loads(manifest),
                backbone_fingerprint=backbone.fingerprint, metrics=trained.metrics,
                reviewed_by=user,
            )
            version.manifest_file.save(f"demo/{domain.name}/{MANIFEST_NAME}",
                                       ContentFile(manifest), save=False)
            version.weights.save(f"demo/{domain.name}/{WEIGHTS_NAME}",
                                 ContentFile((out / WEIGHTS_NAME).read_bytes()), save=False)
            version.save()
            self.stdout.write(f"{domain.name}: expert dev accuracy "
                              f"{trained.metrics['dev_accuracy']:.4f}")
        try:
            job = services.gating_train_start(user=user,
                                              params={"max_train_per_domain": max_train})
        except DomainError as exc:
            raise CommandError(exc.message) from None
        worker = "gating-demo@" + settings.ALLOWED_HOSTS[0]
        if run_job(job.pk, worker=worker) != Job.Status.SUCCEEDED:
            raise CommandError(f"training failed: {Job.objects.get(pk=job.pk).error}")
        version = GatingVersion.objects.get(pk=job.params["gating_version_id"])
        if run_job(version.eval_job_id, worker=worker) != Job.Status.SUCCEEDED:
            error = Job.objects.get(pk=version.eval_job_id).error
            raise CommandError(f"evaluation failed: {error}")
        version.refresh_from_db()
        services.gating_promote(version=version, user=user)
        summary = version.report["summary"]
        self.stdout.write(f"gating v{version.number} in production: accuracy "
                          f"{summary['accuracy']:.4f}, utilisation "
                          f"{version.report['routing']['utilization']:.3f}")
