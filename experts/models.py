"""The marketplace: domains and their data, experts and their immutable versions, reviews."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

EXPERT_KIND_CHOICES = [("head", "Head (MLP on the pooled trunk)"),
                       ("branch", "Branch (fine-tuned top layers + head)")]


class Domain(models.Model):
    """A classification task with a fixed label list, plus its data splits."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    labels = models.JSONField(default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


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


class ExpertVersion(models.Model):
    """An immutable expert artifact (manifest + safetensors) moving through review."""

    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        TRAINING = "training", "Training"
        VALIDATING = "validating", "Validating"
        INVALID = "invalid", "Validation failed"
        AWAITING_REVIEW = "awaiting_review", "Awaiting review"
        APPROVED = "approved", "Approved"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        REJECTED = "rejected", "Rejected"
        RETIRED = "retired", "Retired"

    class Source(models.TextChoices):
        UPLOAD = "upload", "Uploaded"
        PLATFORM = "platform", "Trained by the platform"

    expert = models.ForeignKey(Expert, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SUBMITTED,
                              db_index=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.UPLOAD)
    kind = models.CharField(max_length=10, blank=True)
    manifest = models.JSONField(default=dict)
    manifest_file = models.FileField(upload_to="experts/", blank=True)
    weights = models.FileField(upload_to="experts/", blank=True)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    backbone_fingerprint = models.CharField(max_length=64, blank=True)
    n_parameters = models.BigIntegerField(default=0)
    checks = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    training_params = models.JSONField(default=dict, blank=True)
    answers_request = models.ForeignKey("ExpertRequest", null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="answers")
    download_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")

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
    evidence = models.JSONField(default=dict)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["board", "domain_id", "rank"]
