"""Output shapes of the marketplace API, and the input shapes it validates."""
from __future__ import annotations

from rest_framework import serializers

from experts.models import (
    EXPERT_KIND_CHOICES,
    DataSplit,
    Domain,
    Expert,
    ExpertRequest,
    ExpertVersion,
    LeaderboardEntry,
    Notification,
    ReviewComment,
)


class DataSplitSerializer(serializers.ModelSerializer):
    class Meta:
        model = DataSplit
        fields = ["kind", "is_private", "n_rows", "label_counts", "sha256", "created_at"]


class DomainSerializer(serializers.ModelSerializer):
    splits = DataSplitSerializer(many=True, read_only=True)

    class Meta:
        model = Domain
        fields = ["id", "name", "description", "labels", "splits", "created_at"]
        read_only_fields = ["id", "splits", "created_at"]


class DomainCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    labels = serializers.ListField(child=serializers.CharField(max_length=200), min_length=1,
                                   max_length=1000)


class SplitUploadSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=DataSplit.Kind.choices)
    file = serializers.FileField()
    is_private = serializers.BooleanField(required=False, allow_null=True, default=None)


class CommentSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username")

    class Meta:
        model = ReviewComment
        fields = ["author", "action", "body", "created_at"]


class VersionSerializer(serializers.ModelSerializer):
    expert = serializers.IntegerField(source="expert_id")
    comments = CommentSerializer(many=True, read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ExpertVersion
        fields = ["id", "expert", "number", "status", "source", "kind", "manifest",
                  "weights_sha256", "size_bytes", "n_parameters", "backbone_fingerprint",
                  "checks", "metrics", "error", "download_count", "answers_request",
                  "created_at", "reviewed_at", "comments", "download_url"]

    def get_download_url(self, version) -> str | None:
        if version.status in (ExpertVersion.Status.APPROVED, ExpertVersion.Status.RETIRED):
            return f"/api/v1/experts/{version.expert_id}/versions/{version.number}/download/"
        return None


class VersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = ExpertVersion
        fields = ["id", "number", "status", "kind", "metrics", "size_bytes", "created_at"]


class ExpertSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    domain = serializers.SlugRelatedField(slug_field="name", queryset=Domain.objects.all())
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Expert
        fields = ["id", "owner", "domain", "name", "description", "license", "intended_use",
                  "training_data", "created_at", "latest_version"]
        read_only_fields = ["id", "owner", "created_at", "latest_version"]

    def get_latest_version(self, expert) -> dict | None:
        versions = list(expert.versions.all())  # prefetched by the selector
        if not versions:
            return None
        return VersionSummarySerializer(max(versions, key=lambda v: v.number)).data


class ExpertUpdateSerializer(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True)
    license = serializers.CharField(required=False, allow_blank=True, max_length=100)
    intended_use = serializers.CharField(required=False, allow_blank=True)
    training_data = serializers.CharField(required=False, allow_blank=True)


class VersionUploadSerializer(serializers.Serializer):
    manifest = serializers.FileField()
    weights = serializers.FileField()
    answers_request = serializers.IntegerField(required=False, allow_null=True)


class TrainRequestSerializer(serializers.Serializer):
    dataset = serializers.FileField()
    kind = serializers.ChoiceField(choices=EXPERT_KIND_CHOICES, default="head")
    epochs = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                      max_value=100)


class ReviewSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=ReviewComment.Action.choices)
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class RequestSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username", read_only=True)
    domain = serializers.SlugRelatedField(slug_field="name", queryset=Domain.objects.all(),
                                          required=False, allow_null=True)
    answers = serializers.SerializerMethodField()
    dataset = serializers.FileField(required=False, allow_null=True, write_only=True)

    class Meta:
        model = ExpertRequest
        fields = ["id", "title", "description", "domain", "target_metric", "dataset", "status",
                  "author", "closed_by", "answers", "created_at"]
        read_only_fields = ["id", "status", "author", "closed_by", "answers", "created_at"]

    def get_answers(self, req) -> list[dict]:
        return [{"version_id": v.pk, "expert": v.expert_id, "number": v.number,
                 "status": v.status} for v in req.answers.all()]


class LeaderboardEntrySerializer(serializers.ModelSerializer):
    contributor = serializers.CharField(source="user.username", default=None)
    version = serializers.SerializerMethodField()

    class Meta:
        model = LeaderboardEntry
        fields = ["rank", "contributor", "version", "accuracy", "macro_f1", "credit",
                  "routing_share", "evidence", "computed_at"]

    def get_version(self, entry) -> dict | None:
        v = entry.version
        if v is None:
            return None
        return {"id": v.pk, "expert": v.expert_id, "number": v.number, "label": v.label,
                "url": f"/experts/{v.expert_id}/versions/{v.number}/"}


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "message", "link", "read", "created_at"]
