"""REST endpoints for gating models and predictions."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, status
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from gating import selectors, services, serving
from gating.serializers import (
    GatingTrainRequestSerializer,
    GatingTrainResponseSerializer,
    GatingVersionDetailSerializer,
    GatingVersionSerializer,
    PredictRequestSerializer,
    PredictResponseSerializer,
    PromoteRequestSerializer,
    PromotionComparisonSerializer,
    PromotionSerializer,
    RollbackResponseSerializer,
)
from moecollab_site.api import (
    PageNumberPagination,
    StrictQueryParams,
    error_responses,
    refuse_unknown_fields,
    validated_body,
)
from moecollab_site.errors import DomainError
from moecollab_site.roles import is_maintainer
from moecollab_site.throttling import (
    PREDICT_WORK,
    client_key,
    predict_budget_message,
    predict_work,
)
from training.serializers import JobSerializer


class IsMaintainerForWrites(permissions.BasePermission):
    message = "only maintainers can train, promote or roll back gating models"

    def has_permission(self, request, view):
        return request.method in permissions.SAFE_METHODS or is_maintainer(request.user)


class _ProductionContext:
    def get_serializer_context(self):
        return {**super().get_serializer_context(),
                "production_id": selectors.production_version_id()}


class GatingListCreate(StrictQueryParams, _ProductionContext, generics.ListAPIView):
    serializer_class = GatingVersionSerializer
    permission_classes = [permissions.IsAuthenticatedOrReadOnly, IsMaintainerForWrites]

    parser_classes = [JSONParser]  # a list of ids and an object of params
    pagination_class = PageNumberPagination

    def get_queryset(self):
        return selectors.gating_version_list()

    @extend_schema(summary="List gating models",
                   responses={200: GatingVersionSerializer(many=True),
                              **error_responses(401, 404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(summary="Train a gating model", request=GatingTrainRequestSerializer,
                   responses={201: GatingTrainResponseSerializer,
                              **error_responses(400, 401, 403, 409)},
                   description="Start training a gating model (maintainers). Refused with 400 "
                               "when no approved experts exist, experts are on different "
                               "backbones, a domain has no train split, or params are invalid; "
                               "with 409 (code duplicate, the message naming and linking it) "
                               "when a gating version that is not failed already combines the "
                               "same expert versions with the same settings on the same "
                               "backbone: nothing new is started.")
    def post(self, request):
        data = validated_body(GatingTrainRequestSerializer, request)
        job = services.gating_train_start(
            user=request.user, expert_version_ids=data["expert_version_ids"],
            params=data["params"],
        )
        version = selectors.gating_version_get(pk=job.params["gating_version_id"])
        body = {"version": GatingVersionSerializer(version).data,
                "job": JobSerializer(job, context={"request": request}).data}
        return Response(body, status=status.HTTP_201_CREATED)


class GatingDetail(StrictQueryParams, _ProductionContext, generics.RetrieveAPIView):
    serializer_class = GatingVersionDetailSerializer

    @extend_schema(summary="Get a gating model with its report",
                   responses={200: GatingVersionDetailSerializer, **error_responses(401, 404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.gating_version_list()


class GatingPromote(StrictQueryParams, APIView):
    permission_classes = [permissions.IsAuthenticated, IsMaintainerForWrites]

    @extend_schema(summary="Compare a gating model with production",
                   responses={200: PromotionComparisonSerializer,
                              **error_responses(401, 403, 404)})
    def get(self, request, pk: int):
        """The candidate against production: what promoting it would change."""
        version = selectors.gating_version_get(pk=pk)
        if version is None:
            raise NotFound(f"gating version {pk} does not exist")
        comparison = selectors.promotion_comparison(version=version)
        return Response({"comparison": comparison,
                         "requires_confirmation": bool(comparison and comparison["worse"])})

    @extend_schema(summary="Promote a gating model to production",
                   request=PromoteRequestSerializer,
                   responses={201: PromotionSerializer, **error_responses(400, 401, 403, 404,
                                                                          409)})
    def post(self, request, pk: int):
        version = selectors.gating_version_get(pk=pk)
        if version is None:
            raise NotFound(f"gating version {pk} does not exist")
        body = validated_body(PromoteRequestSerializer, request)
        promotion = services.gating_promote(version=version, user=request.user,
                                            confirm_worse=body["confirm_worse"])
        return Response(PromotionSerializer(promotion).data, status=status.HTTP_201_CREATED)


class GatingRollback(StrictQueryParams, APIView):
    permission_classes = [permissions.IsAuthenticated, IsMaintainerForWrites]

    @extend_schema(summary="Roll production back to the previous gating model", request=None,
                   responses={200: RollbackResponseSerializer,
                              **error_responses(400, 401, 403, 409)},
                   description="Takes no body.")
    def post(self, request):
        refuse_unknown_fields(request.data, None)
        restored = services.gating_rollback(user=request.user)
        return Response({"production": PromotionSerializer(restored).data if restored else None})


class GatingProduction(StrictQueryParams, APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(summary="Get the production gating model",
                   responses={200: RollbackResponseSerializer, **error_responses(401)})
    def get(self, request):
        current = selectors.production_promotion()
        return Response({"production": PromotionSerializer(current).data if current else None})


class Predict(StrictQueryParams, APIView):
    """Open to everyone, like the playground. Per-call caps bound one call's work; the client's
    call rate and its texts and characters per period (shared with the playground) bound
    the rest."""

    permission_classes = [permissions.AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "predict"
    parser_classes = [JSONParser]

    @extend_schema(summary="Classify texts", request=PredictRequestSerializer,
                   responses={200: PredictResponseSerializer,
                              **error_responses(400, 401, 429, 503)},
                   description="Classify texts with the production gating model: per text the "
                               "domain, label, confidence and the routed experts with weights. "
                               "top_k (1 to the model's number of experts) sends each text to "
                               "that many experts instead of the model's own top_k; each text "
                               "then counts top_k times against the client's text budget.")
    def post(self, request):
        if not isinstance(request.data, dict) or "texts" not in request.data:
            raise DomainError('send a JSON object {"texts": ["...", ...]}', code="invalid_texts")
        refuse_unknown_fields(request.data, PredictRequestSerializer())
        texts = serving.check_texts(request.data["texts"])
        top_k = serving.check_top_k(request.data.get("top_k"))
        if (wait := PREDICT_WORK.charge(request, predict_work(texts, top_k=top_k))) is not None:
            raise Throttled(wait=wait, detail=predict_budget_message())
        return Response(serving.predict(texts, client=client_key(request), top_k=top_k))
