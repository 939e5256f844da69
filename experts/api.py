"""REST endpoints of the marketplace; each validates input, calls one service, serializes."""
from __future__ import annotations

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from experts import selectors, services
from experts.models import Domain, Expert, ExpertRequest
from experts.serializers import (
    DomainCreateSerializer,
    DomainSerializer,
    ExpertSerializer,
    ExpertUpdateSerializer,
    LeaderboardEntrySerializer,
    NotificationSerializer,
    RequestSerializer,
    ReviewSerializer,
    SplitUploadSerializer,
    TrainRequestSerializer,
    VersionSerializer,
    VersionUploadSerializer,
)
from moecollab_site.api import DomainError

READ_OR_AUTH = [permissions.IsAuthenticatedOrReadOnly]
UPLOAD_PARSERS = [MultiPartParser, FormParser]


def _valid(serializer_class, request, **kwargs):
    s = serializer_class(data=request.data, **kwargs)
    s.is_valid(raise_exception=True)
    return s.validated_data


class DomainListCreate(generics.ListAPIView):
    serializer_class = DomainSerializer
    permission_classes = READ_OR_AUTH

    def get_queryset(self):
        return selectors.domain_list()

    @extend_schema(request=DomainCreateSerializer, responses={201: DomainSerializer})
    def post(self, request):
        data = _valid(DomainCreateSerializer, request)
        domain = services.domain_create(user=request.user, **data)
        return Response(DomainSerializer(domain).data, status=status.HTTP_201_CREATED)


class DomainDetail(generics.RetrieveAPIView):
    serializer_class = DomainSerializer
    lookup_field = "name"

    def get_queryset(self):
        return selectors.domain_list()


class DomainSplitUpload(APIView):
    permission_classes = [permissions.IsAuthenticated]
    parser_classes = UPLOAD_PARSERS

    @extend_schema(request={"multipart/form-data": SplitUploadSerializer},
                   responses={201: DomainSerializer})
    def post(self, request, name: str):
        domain = get_object_or_404(Domain, name=name)
        data = _valid(SplitUploadSerializer, request)
        services.domain_split_upload(user=request.user, domain=domain, kind=data["kind"],
                                     upload=data["file"], is_private=data["is_private"])
        domain.refresh_from_db()
        return Response(DomainSerializer(domain).data, status=status.HTTP_201_CREATED)


class ExpertListCreate(generics.ListAPIView):
    serializer_class = ExpertSerializer
    permission_classes = READ_OR_AUTH

    @extend_schema(parameters=[
        OpenApiParameter("domain", str), OpenApiParameter("kind", str),
        OpenApiParameter("status", str), OpenApiParameter("contributor", str),
        OpenApiParameter("q", str, description="text search in name, description, domain"),
    ])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        p = self.request.query_params
        return selectors.expert_list(domain=p.get("domain"), kind=p.get("kind"),
                                     status=p.get("status"), contributor=p.get("contributor"),
                                     text=p.get("q"))

    @extend_schema(request=ExpertSerializer, responses={201: ExpertSerializer})
    def post(self, request):
        data = _valid(ExpertSerializer, request)
        expert = services.expert_create(user=request.user, **data)
        return Response(ExpertSerializer(expert).data, status=status.HTTP_201_CREATED)


class ExpertDetail(APIView):
    permission_classes = READ_OR_AUTH

    @extend_schema(responses=ExpertSerializer)
    def get(self, request, pk: int):
        expert = get_object_or_404(selectors.expert_list(), pk=pk)
        return Response(ExpertSerializer(expert).data)

    @extend_schema(request=ExpertUpdateSerializer, responses=ExpertSerializer)
    def patch(self, request, pk: int):
        expert = get_object_or_404(Expert, pk=pk)
        data = _valid(ExpertUpdateSerializer, request)
        expert = services.expert_update(user=request.user, expert=expert, **data)
        return Response(ExpertSerializer(expert).data)


class VersionListUpload(APIView):
    permission_classes = READ_OR_AUTH
    parser_classes = UPLOAD_PARSERS + [JSONParser]

    @extend_schema(responses=VersionSerializer(many=True))
    def get(self, request, pk: int):
        expert = get_object_or_404(Expert, pk=pk)
        versions = selectors.versions_visible(user=request.user, expert=expert)
        return Response(VersionSerializer(versions, many=True).data)

    @extend_schema(request={"multipart/form-data": VersionUploadSerializer},
                   responses={201: VersionSerializer})
    def post(self, request, pk: int):
        expert = get_object_or_404(Expert.objects.select_related("domain"), pk=pk)
        data = _valid(VersionUploadSerializer, request)
        version = services.expert_version_upload(
            user=request.user, expert=expert, manifest=data["manifest"],
            weights=data["weights"], answers_request=data.get("answers_request"))
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED)


class ExpertTrain(APIView):
    permission_classes = [permissions.IsAuthenticated]
    parser_classes = UPLOAD_PARSERS

    @extend_schema(request={"multipart/form-data": TrainRequestSerializer},
                   responses={201: VersionSerializer})
    def post(self, request, pk: int):
        expert = get_object_or_404(Expert.objects.select_related("domain"), pk=pk)
        data = _valid(TrainRequestSerializer, request)
        version = services.expert_version_train_request(
            user=request.user, expert=expert, dataset=data["dataset"], kind=data["kind"],
            epochs=data.get("epochs"))
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED)


def _version_or_404(request, pk: int, number: int):
    expert = get_object_or_404(Expert, pk=pk)
    version = selectors.version_get(user=request.user, expert=expert, number=number)
    if version is None:
        raise Http404("no such version")
    return version


class VersionDetail(APIView):
    @extend_schema(responses=VersionSerializer)
    def get(self, request, pk: int, number: int):
        return Response(VersionSerializer(_version_or_404(request, pk, number)).data)


class VersionReview(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=ReviewSerializer, responses=VersionSerializer)
    def post(self, request, pk: int, number: int):
        version = _version_or_404(request, pk, number)
        data = _valid(ReviewSerializer, request)
        version = services.expert_version_review(user=request.user, version=version,
                                                 action=data["action"],
                                                 comment=data["comment"])
        return Response(VersionSerializer(version).data)


class VersionDownload(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): bytes},
                   parameters=[OpenApiParameter("file", str, enum=["weights", "manifest"])])
    def get(self, request, pk: int, number: int):
        version = _version_or_404(request, pk, number)
        services.expert_version_download(user=request.user, version=version)
        which = request.query_params.get("file", "weights")
        if which not in ("weights", "manifest"):
            raise DomainError("file must be 'weights' or 'manifest'")
        field = version.weights if which == "weights" else version.manifest_file
        filename = f"{version.expert.name}-v{version.number}-" + (
            "weights.safetensors" if which == "weights" else "manifest.json")
        return FileResponse(field.open("rb"), as_attachment=True, filename=filename)


class ReviewQueue(generics.ListAPIView):
    serializer_class = VersionSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        from moecollab_site.roles import is_maintainer

        if not is_maintainer(self.request.user):
            raise DomainError("only maintainers see the review queue", code="forbidden",
                              status_code=403)
        return selectors.review_queue()


class RequestListCreate(generics.ListAPIView):
    serializer_class = RequestSerializer
    permission_classes = READ_OR_AUTH
    parser_classes = UPLOAD_PARSERS + [JSONParser]

    def get_queryset(self):
        return selectors.request_list(status=self.request.query_params.get("status"))

    @extend_schema(request=RequestSerializer, responses={201: RequestSerializer})
    def post(self, request):
        data = _valid(RequestSerializer, request)
        req = services.request_create(user=request.user, **data)
        return Response(RequestSerializer(req).data, status=status.HTTP_201_CREATED)


class RequestDetail(generics.RetrieveAPIView):
    serializer_class = RequestSerializer

    def get_queryset(self):
        return selectors.request_list()


class RequestClose(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses=RequestSerializer)
    def post(self, request, pk: int):
        req = services.request_close(user=request.user,
                                     request=get_object_or_404(ExpertRequest, pk=pk))
        return Response(RequestSerializer(req).data)


class DomainLeaderboard(generics.ListAPIView):
    serializer_class = LeaderboardEntrySerializer

    def get_queryset(self):
        domain = get_object_or_404(Domain, name=self.kwargs["name"])
        return selectors.leaderboard_domain(domain=domain)


class ContributorLeaderboard(generics.ListAPIView):
    serializer_class = LeaderboardEntrySerializer

    def get_queryset(self):
        return selectors.leaderboard_contributors()


class NotificationList(generics.ListAPIView):
    serializer_class = NotificationSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        return selectors.notifications_for(user=self.request.user)

    @extend_schema(request=None, responses={200: NotificationSerializer(many=True)})
    def post(self, request):
        """Mark every notification read."""
        services.notifications_mark_read(user=request.user)
        return self.list(request)
