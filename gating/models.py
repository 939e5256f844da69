"""Gating models: immutable bundles of expert versions + router weights, and production history."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from experts.models import ExpertVersion
from moecollab_site.jsonsafe import FiniteJSONEncoder


class GatingVersion(models.Model):
    """One trained mixture-of-experts: its experts, router weights, settings and evaluation.

    Immutable once trained: the bundle file, the members and the hyperparameters are written by
    the training job and never changed; evaluation only adds the report. The jobs move it with
    the mark_... methods, each one UPDATE guarded by the state it leaves.
    """

    class Status(models.TextChoices):
        TRAINING = "training", "Training"
        TRAINED = "trained", "Trained"
        EVALUATED = "evaluated", "Evaluated"
        FAILED = "failed", "Failed"

    number = models.PositiveIntegerField(unique=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.TRAINING,
                              db_index=True)
    experts = models.ManyToManyField(ExpertVersion, through="GatingMember", related_name="+")
    # Platform-written safetensors: router, unregularised router and the experts' weights.
    weights = models.FileField(upload_to="gating/", blank=True)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    backbone_fingerprint = models.CharField(max_length=64, blank=True)
    split_layer = models.PositiveIntegerField(default=0)
    # top_k, temperature, lambdas, ...
    params = models.JSONField(encoder=FiniteJSONEncoder, default=dict, blank=True)
    label_space = models.JSONField(encoder=FiniteJSONEncoder, default=list, blank=True)
    training_curves = models.JSONField(encoder=FiniteJSONEncoder, default=dict, blank=True)
    train_metrics = models.JSONField(encoder=FiniteJSONEncoder, default=dict, blank=True)
    report = models.JSONField(encoder=FiniteJSONEncoder, default=dict, blank=True)
    error = models.TextField(blank=True)
    trained_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    train_job = models.ForeignKey("training.Job", null=True, blank=True,
                                  on_delete=models.SET_NULL, related_name="+")
    eval_job = models.ForeignKey("training.Job", null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    trained_at = models.DateTimeField(null=True, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"gating v{self.number}"

    @property
    def link(self) -> str:
        return f"/gating/{self.pk}/"

    @property
    def display_status(self) -> str:
        """The status, counting a version whose training job died or was cancelled as failed."""
        from training.models import Job

        if (self.status == self.Status.TRAINING and self.train_job is not None
                and self.train_job.status in (Job.Status.FAILED, Job.Status.CANCELLED)):
            return self.Status.FAILED
        return self.status

    @property
    def eval_n(self) -> int | None:
        """Evaluation rows behind the report's summary accuracy (all domains), if recorded."""
        counts = (self.report or {}).get("n_eval") or {}
        return sum(counts.values()) if counts else None

    def _move(self, *, allowed_from, **fields) -> bool:
        """One guarded UPDATE; mirrors it on this instance and says whether it applied."""
        moved = GatingVersion.objects.filter(pk=self.pk, status__in=allowed_from).update(
            **fields)
        if moved:
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(moved)

    def mark_failed(self, error: str) -> bool:
        """Training died or was cancelled; `error` says how."""
        return self._move(allowed_from=[self.Status.TRAINING], status=self.Status.FAILED,
                          error=error[:5000])

    def mark_trained(self, *, weights: str, weights_sha256: str, backbone_fingerprint: str,
                     split_layer: int, params: dict, label_space: list[str],
                     training_curves: dict, train_metrics: dict, eval_job) -> bool:
        """Training wrote the bundle: record it and the evaluation job it queued."""
        return self._move(
            allowed_from=[self.Status.TRAINING], status=self.Status.TRAINED, weights=weights,
            weights_sha256=weights_sha256, backbone_fingerprint=backbone_fingerprint,
            split_layer=split_layer, params=params, label_space=label_space,
            training_curves=training_curves, train_metrics=train_metrics,
            trained_at=timezone.now(), eval_job=eval_job)

    def mark_evaluation_failed(self, error: str) -> bool:
        """Evaluation ended without a report: the version stays trained (it can be evaluated
        again) and says why."""
        return self._move(allowed_from=[self.Status.TRAINED], error=error[:5000])

    def mark_evaluated(self, *, report: dict, eval_job) -> bool:
        """Evaluation stored its report (a re-evaluation replaces the previous one)."""
        return self._move(allowed_from=[self.Status.TRAINED, self.Status.EVALUATED],
                          status=self.Status.EVALUATED, report=report, error="",
                          evaluated_at=timezone.now(), eval_job=eval_job)

    def members_in_order(self) -> list[GatingMember]:
        if "members" in getattr(self, "_prefetched_objects_cache", {}):
            return list(self.members.all())  # gating_version_list prefetched them for a list
        return list(self.members.select_related("expert_version__expert__owner",
                                                "expert_version__expert__domain"))


class GatingMember(models.Model):
    """An expert version inside a gating version, at a fixed router output position."""

    version = models.ForeignKey(GatingVersion, on_delete=models.CASCADE, related_name="members")
    expert_version = models.ForeignKey(ExpertVersion, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["version_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["version", "position"], name="gating_member_position"),
            models.UniqueConstraint(fields=["version", "expert_version"],
                                    name="gating_member_once"),
        ]


class Promotion(models.Model):
    """A gating version put into production; the latest one not rolled back is production."""

    version = models.ForeignKey(GatingVersion, on_delete=models.PROTECT,
                                related_name="promotions")
    promoted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    rolled_back = models.BooleanField(default=False)
    rolled_back_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                       on_delete=models.SET_NULL, related_name="+")
    rolled_back_at = models.DateTimeField(null=True, blank=True)
    # Who promoted the version although it scored below production (None: it was not worse).
    confirmed_worse_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                           on_delete=models.SET_NULL, related_name="+")
    # Candidate vs production at promotion time (gating.ml.stats.compare_reports), or {}.
    comparison = models.JSONField(encoder=FiniteJSONEncoder, default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.version} promoted {self.at:%Y-%m-%d %H:%M}"
