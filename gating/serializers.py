"""Shapes of the gating API (output only; input is checked by the services)."""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gating.ml.mixes import MIXES
from gating.models import GatingVersion, Promotion
from gating.services import TRAIN_PARAMS
from moecollab_site.api import MAX_ID, NOT_BLANK, StrictIntegerField
from training.serializers import JobSerializer


class MemberSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    expert_version_id = serializers.IntegerField()
    label = serializers.CharField(source="expert_version.label")
    domain = serializers.CharField(source="expert_version.expert.domain.name")


class GatingVersionSerializer(serializers.ModelSerializer):
    status = serializers.CharField(source="display_status")
    trained_by = serializers.CharField(source="trained_by.username", default=None,
                                       allow_null=True)
    experts = serializers.SerializerMethodField()
    summary = serializers.SerializerMethodField()
    in_production = serializers.SerializerMethodField()

    class Meta:
        model = GatingVersion
        fields = ["id", "number", "status", "experts", "params", "backbone_fingerprint",
                  "split_layer", "weights_sha256", "summary", "in_production", "trained_by",
                  "train_job", "eval_job", "error", "created_at", "trained_at", "evaluated_at"]
        read_only_fields = fields

    def get_experts(self, obj) -> list[dict]:
        return MemberSerializer(obj.members_in_order(), many=True).data

    def get_summary(self, obj) -> dict:
        report = obj.report or {}
        routing = report.get("routing") or {}
        return {"accuracy": (report.get("summary") or {}).get("accuracy"),
                "macro_f1": (report.get("summary") or {}).get("macro_f1"),
                "routing_entropy": routing.get("entropy"),
                "utilization": routing.get("utilization")}

    def get_in_production(self, obj) -> bool:
        return obj.pk == self.context.get("production_id")


class GatingVersionDetailSerializer(GatingVersionSerializer):
    class Meta(GatingVersionSerializer.Meta):
        fields = GatingVersionSerializer.Meta.fields + [
            "label_space", "training_curves", "train_metrics", "report"]
        read_only_fields = fields


def _train_params_schema() -> dict:
    """The hyperparameters a maintainer may set, with the ranges the service enforces."""
    properties = {}
    for name, (kind, low, high) in TRAIN_PARAMS.items():
        if kind is bool:
            properties[name] = {"type": "boolean"}
        elif kind is str:
            properties[name] = {"type": "string", "enum": list(MIXES)}
        else:
            properties[name] = {"type": "integer" if kind is int else "number",
                                "minimum": low, "maximum": high}
        if name in ("samples_per_domain", "max_train_per_domain"):
            properties[name]["nullable"] = True  # null: use every row
    return {"type": "object", "properties": properties, "additionalProperties": False}


@extend_schema_field(_train_params_schema())
class TrainParamsField(serializers.DictField):
    """Hyperparameters; the service checks names and ranges and names what is wrong."""


class GatingTrainRequestSerializer(serializers.Serializer):
    expert_version_ids = serializers.ListField(
        child=StrictIntegerField(min_value=1, max_value=MAX_ID), required=False,
        allow_null=True, default=None,
        help_text="approved expert versions to combine (at least 2, one backbone), in router "
                  "order; omitted = all approved")
    params = TrainParamsField(required=False, default=dict,
                              help_text="omitted ones take the defaults")


class GatingTrainResponseSerializer(serializers.Serializer):
    version = GatingVersionSerializer()
    job = JobSerializer()


class PromotionSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number")
    version_id = serializers.IntegerField()
    promoted_by = serializers.CharField(source="promoted_by.username", default=None,
                                        allow_null=True)
    rolled_back_by = serializers.CharField(source="rolled_back_by.username", default=None,
                                           allow_null=True)
    confirmed_worse_by = serializers.CharField(source="confirmed_worse_by.username",
                                               default=None, allow_null=True)

    class Meta:
        model = Promotion
        fields = ["id", "version", "version_id", "promoted_by", "at", "rolled_back",
                  "rolled_back_by", "rolled_back_at", "confirmed_worse_by", "comparison"]
        read_only_fields = fields


class PromoteRequestSerializer(serializers.Serializer):
    confirm_worse = serializers.BooleanField(
        default=False, help_text="required (true) to promote a version that scores below "
        "production")


class PromotionComparisonSerializer(serializers.Serializer):
    comparison = serializers.JSONField(
        allow_null=True, help_text="candidate vs production per domain and summary accuracy "
        "(difference, paired 95 % interval when evaluated on the same rows); null without "
        "production")
    requires_confirmation = serializers.BooleanField()


class RollbackResponseSerializer(serializers.Serializer):
    production = PromotionSerializer(allow_null=True)


class PredictRequestSerializer(serializers.Serializer):
    texts = serializers.ListField(
        child=serializers.CharField(max_length=settings.MOECOLLAB_PREDICT_MAX_CHARS,
                                    validators=[NOT_BLANK]),
        min_length=1, max_length=settings.MOECOLLAB_PREDICT_MAX_TEXTS,
        help_text="texts to classify, none of them blank")
    top_k = StrictIntegerField(
        min_value=1, required=False, allow_null=True,
        help_text="experts each text is sent to, from 1 to the production model's number of "
                  "experts (400 above it); omitted or null: the model's own mix and top_k")


class RoutedExpertSerializer(serializers.Serializer):
    expert = serializers.CharField(help_text="expert version id")
    name = serializers.CharField()
    weight = serializers.FloatField()


class PredictionSerializer(serializers.Serializer):
    domain = serializers.CharField()
    label = serializers.CharField()
    confidence = serializers.FloatField()
    experts = RoutedExpertSerializer(many=True)


class PredictResponseSerializer(serializers.Serializer):
    gating_version = serializers.IntegerField()
    gating_version_id = serializers.IntegerField()
    top_k = serializers.IntegerField(help_text="experts each text was sent to when mix is "
                                               "top_k")
    mix = serializers.ChoiceField(
        choices=MIXES, help_text="how the experts were mixed: top_k (each text's top_k "
        "experts), domain (every expert of its most probable domain) or dense (every expert); "
        "each prediction's experts lists the ones that ran on it")
    predictions = PredictionSerializer(many=True)
    ms = serializers.FloatField()
