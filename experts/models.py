"""The marketplace: domains and their data, experts and their immutable versions, reviews."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from moecollab_site.jsonsafe import FiniteJSONEncoder
from moecollab_site.roles import is_maintainer

EXPERT_KIND_CHOICES = [("head", "Head (MLP on the pooled trunk)"),
                       ("branch", "Branch (fine-tuned top layers + head)"),
                       ("lora", "LoRA (PEFT adapter on the whole backbone + head)")]


class Domain(models.Model):
    """A classification task with a fixed label list, plus its data splits."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    labels = models.JSONField(default=list)
    # Short texts the playground offers to try; written by maintainers, never split rows
    # (a test split may be private).
    examples = models.JSONField(default=list, blank=True)
    # label -> plain words, for label codes a reader cannot guess (TREC's LOC, NUM, ...).
    label_help = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def label_explained(self, label: str) -> str:
        """The plain words for a label, or "" when none were written."""
        return str(self.label_help.get(label, "")) if isinstance(self.label_help, dict) else ""

    def labels_explained(self) -> list[tuple[str, str]]:
        """(label, plain words) for each label that has words, in the domain's label order."""
        return [(label, words) for label in self.labels if (words := self.label_explained(label))]

    def apply_standard_guide(self) -> bool:
        """Fill empty examples and label help from experts.domain_guides for the standard
        domains; what a maintainer wrote is kept. True when something was filled."""
        from experts.domain_guides import standard_guide

        guide = standard_guide(self.name, self.labels)
        if guide is None:
            return False
        fields = [f for f in ("examples", "label_help") if not getattr(self, f)]
        for f in fields:
            setattr(self, f, guide[f])
        if fields:
            self.save(update_fields=fields)
        return bool(fields)


class DataSplit(models.Model):
    """One split of a domain, stored as canonical JSONL written by the platform."""

    class Kind(models.TextChoices):
        TRAIN = "train", "Train"
        DEV = "dev", "Dev"
        TEST = "test", "Test"

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="splits")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    is_private = models.BooleanField(default=False)
    file = models.FileField(upload_to="datasets/")
    n_rows = models.PositiveIntegerField(default=0)
    label_counts = models.JSONField(default=dict)
    sha256 = models.CharField(max_length=64)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["domain", "kind"], name="one_split_per_kind"),
        ]
        ordering = ["domain__name", "kind"]

    def __str__(self) -> str:
        return f"{self.domain.name}/{self.kind}"


class Expert(models.Model):
    """A contributor's expert for one domain; what changes over time are its versions."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="experts")
    domain = models.ForeignKey(Domain, on_delete=models.PROTECT, related_name="experts")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    license = models.CharField(max_length=100, blank=True, default="CC-BY-4.0")
    intended_use = models.TextField(blank=True)
    training_data = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="expert_name_per_owner"),
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.owner.username}/{self.name}"


class ExpertVersionQuerySet(models.QuerySet):
    def public(self) -> ExpertVersionQuerySet:
        return self.filter(status__in=ExpertVersion.PUBLIC_STATUSES)

    def visible_to(self, user) -> ExpertVersionQuerySet:
        """Public versions for everyone; owners also see all of their own, maintainers all."""
        if is_maintainer(user):
            return self
        if not user.is_authenticated:
            return self.public()
        return self.filter(Q(status__in=ExpertVersion.PUBLIC_STATUSES) | Q(expert__owner=user))


class ExpertVersion(models.Model):
    """An immutable expert artifact (manifest + safetensors) moving through review.

    Jobs move a version with the mark_... methods: each is one guarded UPDATE that applies only
    while the version is in a state that job owns, so a late or repeated job cannot overwrite
    a review decision. Review moves it in experts.services.expert_version_review.
    """

    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        TRAINING = "training", "Training"
        VALIDATING = "validating", "Validating"
        INVALID = "invalid", "Validation failed"
        CANCELLED = "cancelled", "Cancelled"
        AWAITING_REVIEW = "awaiting_review", "Awaiting review"
        APPROVED = "approved", "Approved"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        REJECTED = "rejected", "Rejected"
        RETIRED = "retired", "Retired"

    # Anyone may see and download these; every other state only its owner and maintainers.
    PUBLIC_STATUSES = (Status.APPROVED, Status.RETIRED)
    # A job is working on the version: its page keeps watching, the job's verdict applies.
    BUSY_STATUSES = (Status.SUBMITTED, Status.TRAINING, Status.VALIDATING)

    class Source(models.TextChoices):
        UPLOAD = "upload", "Uploaded"
        PLATFORM = "platform", "Trained by the platform"

    expert = models.ForeignKey(Expert, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SUBMITTED,
                              db_index=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.UPLOAD)
    kind = models.CharField(max_length=10, blank=True)
    manifest = models.JSONField(encoder=FiniteJSONEncoder, default=dict)
    manifest_file = models.FileField(upload_to="experts/", blank=True)
    weights = models.FileField(upload_to="experts/", blank=True)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    backbone_fingerprint = models.CharField(max_length=64, blank=True)
    n_parameters = models.BigIntegerField(default=0)
    checks = models.JSONField(encoder=FiniteJSONEncoder, default=list, blank=True)
    metrics = models.JSONField(encoder=FiniteJSONEncoder, default=dict, blank=True)
    error = models.TextField(blank=True)
    training_params = models.JSONField(encoder=FiniteJSONEncoder, default=dict, blank=True)
    answers_request = models.ForeignKey("ExpertRequest", null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="answers")
    download_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")

    objects = ExpertVersionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["expert", "number"], name="version_number_per_expert"),
            models.UniqueConstraint(fields=["weights_sha256"],
                                    condition=~models.Q(weights_sha256=""),
                                    name="unique_weights_hash"),
        ]
        ordering = ["expert_id", "-number"]

    def __str__(self) -> str:
        return f"{self.expert} v{self.number}"

    @property
    def label(self) -> str:
        return f"{self.expert.owner.username}/{self.expert.name} v{self.number}"

    @property
    def is_public(self) -> bool:
        return self.status in self.PUBLIC_STATUSES

    @property
    def is_busy(self) -> bool:
        return self.status in self.BUSY_STATUSES

    def is_visible_to(self, user, *, maintainer: bool | None = None) -> bool:
        """The rule of visible_to() for a version in memory; pass `maintainer` in loops."""
        if self.is_public or self.expert.owner_id == getattr(user, "pk", None):
            return True
        return is_maintainer(user) if maintainer is None else maintainer

    def _move(self, *, allowed_from, **fields) -> bool:
        """One guarded UPDATE; mirrors it on this instance and says whether it applied."""
        moved = ExpertVersion.objects.filter(pk=self.pk, status__in=allowed_from).update(
            **fields)
        if moved:
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(moved)

    def mark_validating(self, *, validation_job: int) -> bool:
        """A (new) validation job owns the version."""
        return self._move(allowed_from=self.BUSY_STATUSES, status=self.Status.VALIDATING,
                          training_params={**self.training_params,
                                           "validation_job": validation_job})

    def mark_awaiting_review(self, *, metrics: dict) -> bool:
        """Validation passed: the version waits for a maintainer, with its test metrics."""
        return self._move(allowed_from=[self.Status.VALIDATING],
                          status=self.Status.AWAITING_REVIEW, metrics=metrics, error="")

    def mark_invalid(self, error: str) -> bool:
        """A check or the job itself failed; `error` says what, for the owner."""
        return self._move(allowed_from=self.BUSY_STATUSES, status=self.Status.INVALID,
                          error=error[:5000])

    def mark_cancelled(self, reason: str) -> bool:
        """Its training or validation job was cancelled before it finished."""
        return self._move(allowed_from=self.BUSY_STATUSES, status=self.Status.CANCELLED,
                          error=reason[:5000])


class ReviewComment(models.Model):
    """One entry of a version's review thread: a comment or a review decision."""

    class Action(models.TextChoices):
        COMMENT = "comment", "Comment"
        APPROVE = "approve", "Approve"
        REQUEST_CHANGES = "request_changes", "Request changes"
        REJECT = "reject", "Reject"
        RETIRE = "retire", "Retire"

    version = models.ForeignKey(ExpertVersion, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=20, choices=Action.choices, default=Action.COMMENT)
    body = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]


class Notification(models.Model):
    """Something a user should see: a status change of their version, a comment, a request."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="notifications")
    message = models.CharField(max_length=300)
    link = models.CharField(max_length=300, blank=True)
    read = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]


class ExpertRequest(models.Model):
    """A wanted domain or expert posted on the requests board."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                               related_name="expert_requests")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    domain = models.ForeignKey(Domain, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="requests")
    target_metric = models.CharField(max_length=200, blank=True)
    dataset = models.FileField(upload_to="request-datasets/", blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    closed_by = models.ForeignKey(ExpertVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title


class LeaderboardEntry(models.Model):
    """A precomputed leaderboard row, rebuilt by the refresh job; `evidence` says where from."""

    class Board(models.TextChoices):
        DOMAIN = "domain", "Domain"
        CONTRIBUTOR = "contributor", "Contributor"

    board = models.CharField(max_length=12, choices=Board.choices)
    domain = models.ForeignKey(Domain, null=True, blank=True, on_delete=models.CASCADE,
                               related_name="+")
    version = models.ForeignKey(ExpertVersion, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                             on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveIntegerField()
    accuracy = models.FloatField(null=True)
    macro_f1 = models.FloatField(null=True)
    credit = models.FloatField(null=True)
    routing_share = models.FloatField(null=True)
    evidence = models.JSONField(encoder=FiniteJSONEncoder, default=dict)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["board", "domain_id", "rank"]
