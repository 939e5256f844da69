"""Output shapes of the marketplace API, and the input shapes it validates."""
from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
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
from moecollab_site.api import NAME, StrictCharField


@extend_schema_field(OpenApiTypes.BINARY)
class UploadField(serializers.FileField):
    """A file sent as a multipart part (described as binary, not as a URL, in the schema)."""


class DomainNameField(serializers.SlugRelatedField):
    """A domain given by its name; a JSON number is refused, not looked up as text."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="name", queryset=Domain.objects.all(), **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictModelSerializer(serializers.ModelSerializer):
    """Text columns refuse numbers and booleans in JSON input instead of converting them."""

    serializer_field_mapping = {**serializers.ModelSerializer.serializer_field_mapping,
                                models.CharField: StrictCharField,
                                models.TextField: StrictCharField}


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


@extend_schema_field({"type": "array", "uniqueItems": True, "minItems": 1, "maxItems": 1000,
                     "items": {"type": "string", "maxLength": 200,
                               "pattern": NAME.regex.pattern}})
class DistinctListField(serializers.ListField):
    """Labels: a list of distinct, non-blank strings (the service refuses repeats)."""


class DomainCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=64, validators=[
        RegexValidator(r"^[a-z0-9][a-z0-9_-]{0,63}$",
                       "must be 1-64 lowercase letters, digits, '-' or '_'")],
        help_text="lowercase letters, digits, '-' or '_'")
    description = StrictCharField(required=False, allow_blank=True, default="")
    labels = DistinctListField(child=StrictCharField(max_length=200, validators=[NAME]),
                               min_length=1, max_length=1000)


class SplitUploadSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=DataSplit.Kind.choices)
    file = UploadField(help_text="JSONL ({\"text\", \"label\"} per line) or CSV")
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
        if version.is_public:
            return f"/api/v1/experts/{version.expert_id}/versions/{version.number}/download/"
        return None


class VersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = ExpertVersion
        fields = ["id", "number", "status", "kind", "metrics", "size_bytes", "created_at"]


class ExpertSerializer(StrictModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    domain = DomainNameField()
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Expert
        fields = ["id", "owner", "domain", "name", "description", "license", "intended_use",
                  "training_data", "created_at", "latest_version"]
        read_only_fields = ["id", "owner", "created_at", "latest_version"]
        extra_kwargs = {"name": {"validators": [NAME]}}

    def get_latest_version(self, expert) -> dict | None:
        versions = list(expert.versions.all())  # prefetched by the selector
        if not versions:
            return None
        return VersionSummarySerializer(max(versions, key=lambda v: v.number)).data


class ExpertUpdateSerializer(serializers.Serializer):
    description = StrictCharField(required=False, allow_blank=True)
    license = StrictCharField(required=False, allow_blank=True, max_length=100)
    intended_use = StrictCharField(required=False, allow_blank=True)
    training_data = StrictCharField(required=False, allow_blank=True)


class VersionUploadSerializer(serializers.Serializer):
    """An expert artifact (manifest + weights), or a LoRA adapter folder as peft writes it."""

    manifest = UploadField(required=False, help_text="manifest.json of the artifact")
    weights = UploadField(required=False, help_text="weights.safetensors of the artifact")
    adapter_config = UploadField(
        required=False, help_text="LoRA: adapter_config.json as peft's save_pretrained wrote it")
    adapter_model = UploadField(
        required=False, help_text="LoRA: adapter_model.safetensors (pickled .bin files are "
                                  "refused)")
    labels = StrictCharField(
        required=False, max_length=20000,
        help_text="LoRA: the domain's labels in the order of the adapter's head outputs, "
                  "comma-separated (peft does not record them)")
    answers_request = serializers.IntegerField(required=False, allow_null=True)

    def validate_labels(self, value: str) -> list[str]:
        labels = [x.strip() for x in value.split(",")]
        if any(not x for x in labels):
            raise serializers.ValidationError("labels must be comma-separated non-empty names")
        return labels


class TrainRequestSerializer(serializers.Serializer):
    dataset = UploadField(help_text="labeled JSONL or CSV with the domain's labels")
    kind = serializers.ChoiceField(choices=EXPERT_KIND_CHOICES, default="head")
    epochs = serializers.IntegerField(required=False, allow_null=True, min_value=1,
                                      max_value=100)


class ReviewSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=ReviewComment.Action.choices)
    comment = StrictCharField(required=False, allow_blank=True, default="",
                              help_text="required (not blank) when action is comment")


class RequestSerializer(StrictModelSerializer):
    author = serializers.CharField(source="author.username", read_only=True)
    domain = DomainNameField(required=False, allow_null=True)
    answers = serializers.SerializerMethodField()
    dataset = UploadField(required=False, allow_null=True, write_only=True)

    class Meta:
        model = ExpertRequest
        fields = ["id", "title", "description", "domain", "target_metric", "dataset", "status",
                  "author", "closed_by", "answers", "created_at"]
        read_only_fields = ["id", "status", "author", "closed_by", "answers", "created_at"]
        extra_kwargs = {"title": {"validators": [NAME]}}

    def get_answers(self, req) -> list[dict]:
        return [{"version_id": v.pk, "expert": v.expert_id, "number": v.number,
                 "status": v.status} for v in req.answers.all()]


class RequestCreateSerializer(RequestSerializer):
    """The body that asks for an expert, for the schema: only what a client may send, so the
    request shape is a closed object without the answer's read-only fields."""

    class Meta(RequestSerializer.Meta):
        fields = ["title", "description", "domain", "target_metric", "dataset"]
        read_only_fields: list[str] = []


class LeaderboardEntrySerializer(serializers.ModelSerializer):
    contributor = serializers.CharField(source="user.username", default=None, allow_null=True)
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


class NotificationPageSerializer(serializers.Serializer):
    """A page of notifications, as the list answers it."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = NotificationSerializer(many=True)


class LayerConfigSerializer(serializers.Serializer):
    """The Hugging Face fields a branch expert's layers are rebuilt from."""

    model_type = serializers.CharField()
    hidden_size = serializers.IntegerField()
    num_attention_heads = serializers.IntegerField()
    intermediate_size = serializers.IntegerField()
    hidden_act = serializers.CharField()
    layer_norm_eps = serializers.FloatField()
    hidden_dropout_prob = serializers.FloatField()
    attention_probs_dropout_prob = serializers.FloatField()


class BackboneSerializer(serializers.Serializer):
    name = serializers.CharField()
    fingerprint = serializers.CharField(help_text="sha256 of config, vocabulary and weights")
    num_layers = serializers.IntegerField()
    hidden_size = serializers.IntegerField()
    layer_config = LayerConfigSerializer()


class PlatformSerializer(serializers.Serializer):
    backbone = BackboneSerializer(help_text="what every artifact must be built on")
    upload_max_bytes = serializers.IntegerField(help_text="cap on weights.safetensors")
    manifest_max_bytes = serializers.IntegerField(help_text="cap on manifest.json")
