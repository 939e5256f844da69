"""REST endpoints for jobs: list, create, detail, cancel."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from moecollab_site.api import (
    PageNumberPagination,
    StrictQueryParams,
    error_responses,
    refuse_unknown_fields,
    validated_body,
)
from moecollab_site.roles import is_maintainer
from training import selectors, services
from training.models import Job
from training.serializers import JobCreateSerializer, JobSerializer


class IsMaintainerForWrites(permissions.BasePermission):
    message = "only maintainers can start or cancel jobs"

    def has_permission(self, request, view):
        if request.method in permissions.SAFE_METHODS:
            return True
        return is_maintainer(request.user)


class JobListCreate(StrictQueryParams, generics.ListAPIView):
    serializer_class = JobSerializer
    permission_classes = [permissions.IsAuthenticatedOrReadOnly, IsMaintainerForWrites]
    parser_classes = [JSONParser]  # params are an object
    pagination_class = PageNumberPagination
    query_params = (
        OpenApiParameter("status", str, description="only jobs with this status"),
        OpenApiParameter("kind", str, description="only jobs of this kind"),
    )

    def get_queryset(self):
        return selectors.job_list(
            user=self.request.user, status=self.request.query_params.get("status"),
            kind=self.request.query_params.get("kind"),
        )

    @extend_schema(summary="List jobs", parameters=list(query_params),
                   responses={200: JobSerializer(many=True), **error_responses(401, 404)},
                   description="The jobs you started (maintainers: every job).")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(summary="Start a job", request=JobCreateSerializer,
                   responses={201: JobSerializer, **error_responses(400, 401, 403)},
                   description="Start a job (maintainers).")
    def post(self, request):
        data = validated_body(JobCreateSerializer, request)
        job = services.job_create(kind=data["kind"], user=request.user, params=data["params"])
        return Response(JobSerializer(job, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)


class JobDetail(StrictQueryParams, generics.RetrieveAPIView):
    serializer_class = JobSerializer

    def get_queryset(self):
        return selectors.job_list(user=self.request.user)

    @extend_schema(summary="Get a job", responses={200: JobSerializer, **error_responses(401, 404)},
                   description="A job you started (maintainers: any job); 404 for others'.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class JobCancel(StrictQueryParams, APIView):
    permission_classes = [permissions.IsAuthenticated, IsMaintainerForWrites]

    @extend_schema(summary="Cancel a job", request=None,
                   responses={200: JobSerializer, **error_responses(400, 401, 403, 404, 409)},
                   description="Ask a job to stop (maintainers); 409 when it has finished. "
                               "Takes no body.")
    def post(self, request, pk: int):
        refuse_unknown_fields(request.data, None)
        job = services.job_cancel(job=get_object_or_404(Job, pk=pk))
        return Response(JobSerializer(job, context={"request": request}).data)
