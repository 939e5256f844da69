"""REST endpoints of the marketplace; each validates input, calls one service, serializes."""
from __future__ import annotations

from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
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
    NotificationPageSerializer,
    NotificationSerializer,
    PlatformSerializer,
    RequestCreateSerializer,
    RequestSerializer,
    ReviewSerializer,
    SplitUploadSerializer,
    TrainRequestSerializer,
    VersionSerializer,
    VersionUploadSerializer,
)
from moecollab_site.api import (
    PageNumberPagination,
    StrictQueryParams,
    error_responses,
    refuse_unknown_fields,
    validated_body,
)
from moecollab_site.errors import DomainError, forbidden

READ_OR_AUTH = [permissions.IsAuthenticatedOrReadOnly]
UPLOAD_PARSERS = [MultiPartParser, FormParser]
# Every operation refuses a wrong token (401); lists also answer 404 for a page past the end.
READ = error_responses(401, 404)


class DomainListCreate(StrictQueryParams, generics.ListAPIView):
    serializer_class = DomainSerializer
    pagination_class = PageNumberPagination
    permission_classes = READ_OR_AUTH
    parser_classes = [JSONParser]  # labels are a list

    def get_queryset(self):
        return selectors.domain_list()

    @extend_schema(summary="List domains", responses={200: DomainSerializer(many=True), **READ})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(summary="Create a domain", request=DomainCreateSerializer,
                   responses={201: DomainSerializer, **error_responses(400, 401, 403, 409)},
                   description="Create a domain (maintainers); 409 when the name is taken.")
    def post(self, request):
        data = validated_body(DomainCreateSerializer, request)
        domain = services.domain_create(user=request.user, **data)
        return Response(DomainSerializer(domain).data, status=status.HTTP_201_CREATED)


class DomainDetail(StrictQueryParams, generics.RetrieveAPIView):
    serializer_class = DomainSerializer
    lookup_field = "name"

    @extend_schema(summary="Get a domain", responses={200: DomainSerializer, **READ})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.domain_list()


class DomainSplitUpload(StrictQueryParams, APIView):
    permission_classes = [permissions.IsAuthenticated]
    parser_classes = UPLOAD_PARSERS

    @extend_schema(summary="Upload a domain's data split",
                   request={"multipart/form-data": SplitUploadSerializer},
                   responses={201: DomainSerializer, **error_responses(400, 401, 403, 404)},
                   description="Upload (or replace) a split of a domain (maintainers).")
    def post(self, request, name: str):
        domain = get_object_or_404(Domain, name=name)
        data = validated_body(SplitUploadSerializer, request)
        services.domain_split_upload(user=request.user, domain=domain, kind=data["kind"],
                                     upload=data["file"], is_private=data["is_private"])
        domain.refresh_from_db()
        return Response(DomainSerializer(domain).data, status=status.HTTP_201_CREATED)


class ExpertListCreate(StrictQueryParams, generics.ListAPIView):
    serializer_class = ExpertSerializer
    pagination_class = PageNumberPagination
    permission_classes = READ_OR_AUTH

    query_params = (
        OpenApiParameter("domain", str, description="only experts of this domain (its name)"),
        OpenApiParameter("kind", str, description="only experts of this kind"),
        OpenApiParameter("status", str, description="only experts with a version in this "
                                                    "status"),
        OpenApiParameter("owner", str, description="only experts of this user (the `owner` "
                                                   "of each expert in the answer)"),
        OpenApiParameter("q", str, description="text search in name, description, domain"),
    )
    # One name for the owner, the one the answers use; the old name says so instead of being
    # dropped.
    renamed_query_params = {"contributor": "owner"}

    @extend_schema(summary="List experts", parameters=list(query_params),
                   responses={200: ExpertSerializer(many=True), **READ})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        p = self.request.query_params
        return selectors.expert_list(user=self.request.user, domain=p.get("domain"),
                                     kind=p.get("kind"), status=p.get("status"),
                                     contributor=p.get("owner"), text=p.get("q"))

    @extend_schema(summary="Create an expert", request=ExpertSerializer,
                   responses={201: ExpertSerializer, **error_responses(400, 401, 409)},
                   description="Create an expert you own; 409 when you already have one of "
                               "that name.")
    def post(self, request):
        data = validated_body(ExpertSerializer, request)
        expert = services.expert_create(user=request.user, **data)
        return Response(ExpertSerializer(expert).data, status=status.HTTP_201_CREATED)


class ExpertDetail(StrictQueryParams, APIView):
    permission_classes = READ_OR_AUTH

    @extend_schema(summary="Get an expert", responses={200: ExpertSerializer, **READ})
    def get(self, request, pk: int):
        expert = get_object_or_404(selectors.expert_list(user=request.user), pk=pk)
        return Response(ExpertSerializer(expert).data)

    @extend_schema(summary="Edit an expert's card", request=ExpertUpdateSerializer,
                   responses={200: ExpertSerializer, **error_responses(400, 401, 403, 404)},
                   description="Edit the expert's card (its owner).")
    def patch(self, request, pk: int):
        expert = get_object_or_404(Expert, pk=pk)
        data = validated_body(ExpertUpdateSerializer, request)
        expert = services.expert_update(user=request.user, expert=expert, **data)
        return Response(ExpertSerializer(expert).data)


class VersionListUpload(StrictQueryParams, APIView):
    permission_classes = READ_OR_AUTH
    parser_classes = UPLOAD_PARSERS + [JSONParser]

    @extend_schema(summary="List an expert's versions",
                   responses={200: VersionSerializer(many=True), **READ})
    def get(self, request, pk: int):
        expert = get_object_or_404(Expert, pk=pk)
        versions = selectors.versions_visible(user=request.user, expert=expert)
        return Response(VersionSerializer(versions, many=True).data)

    @extend_schema(summary="Upload a version",
                   request={"multipart/form-data": VersionUploadSerializer},
                   responses={201: VersionSerializer,
                              **error_responses(400, 401, 403, 404, 409, 413)},
                   description="Upload an artifact as a new version (the expert's owner): "
                               "manifest + weights, or a LoRA adapter as peft's save_pretrained "
                               "writes it (adapter_config + adapter_model + labels). It is "
                               "checked at once (400 names the failed check, 409 a duplicate, "
                               "413 a file over the limit) and validated by a job.")
    def post(self, request, pk: int):
        expert = get_object_or_404(Expert.objects.select_related("domain"), pk=pk)
        data = validated_body(VersionUploadSerializer, request)
        version = services.expert_version_upload(
            user=request.user, expert=expert, manifest=data.get("manifest"),
            weights=data.get("weights"), adapter_config=data.get("adapter_config"),
            adapter_model=data.get("adapter_model"), labels=data.get("labels"),
            answers_request=data.get("answers_request"))
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED)


class ExpertTrain(StrictQueryParams, APIView):
    permission_classes = [permissions.IsAuthenticated]
    parser_classes = UPLOAD_PARSERS

    @extend_schema(summary="Train a version on the platform",
                   request={"multipart/form-data": TrainRequestSerializer},
                   responses={201: VersionSerializer, **error_responses(400, 401, 403, 404)},
                   description="Have the platform train a version on a labeled dataset (the "
                               "expert's owner).")
    def post(self, request, pk: int):
        expert = get_object_or_404(Expert.objects.select_related("domain"), pk=pk)
        data = validated_body(TrainRequestSerializer, request)
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


class VersionDetail(StrictQueryParams, APIView):
    @extend_schema(summary="Get a version", responses={200: VersionSerializer, **READ})
    def get(self, request, pk: int, number: int):
        return Response(VersionSerializer(_version_or_404(request, pk, number)).data)


class VersionReview(StrictQueryParams, APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(summary="Review or comment on a version", request=ReviewSerializer,
                   responses={200: VersionSerializer, **error_responses(400, 401, 403, 404, 409)},
                   description="Approve, request changes, reject or retire (maintainers), or "
                               "comment (maintainers and the owner); 409 when the version's "
                               "status does not allow the action.")
    def post(self, request, pk: int, number: int):
        version = _version_or_404(request, pk, number)
        data = validated_body(ReviewSerializer, request)
        version = services.expert_version_review(user=request.user, version=version,
                                                 action=data["action"],
                                                 comment=data["comment"])
        return Response(VersionSerializer(version).data)


class VersionDownload(StrictQueryParams, APIView):
    query_params = (OpenApiParameter(
        "file", str, enum=["weights", "manifest", "folder"],
        description="folder: a zip of the version's folder with its model card (README.md "
                    "with Hub metadata); a LoRA expert's loads with "
                    "PeftModel.from_pretrained"),)

    @extend_schema(
        summary="Download a version's files",
        responses={(200, "application/octet-stream"): OpenApiResponse(
                       OpenApiTypes.BINARY, description="weights.safetensors"),
                   (200, "application/json"): OpenApiResponse(
                       OpenApiTypes.OBJECT, description="manifest.json"),
                   (200, "application/zip"): OpenApiResponse(
                       OpenApiTypes.BINARY, description="the version's folder (file=folder)"),
                   **error_responses(400, 401, 403, 404)},
        parameters=list(query_params))
    def get(self, request, pk: int, number: int):
        version = _version_or_404(request, pk, number)
        services.expert_version_download(user=request.user, version=version)
        which = request.query_params.get("file", "weights")
        if which not in ("weights", "manifest", "folder"):
            raise DomainError("file must be 'weights', 'manifest' or 'folder'")
        if which == "folder":
            name, data = services.expert_version_folder(version=version)
            return HttpResponse(data, content_type="application/zip", headers={
                "Content-Disposition": f'attachment; filename="{name}"'})
        field = version.weights if which == "weights" else version.manifest_file
        filename = f"{version.expert.name}-v{version.number}-" + (
            "weights.safetensors" if which == "weights" else "manifest.json")
        return FileResponse(field.open("rb"), as_attachment=True, filename=filename)


class ReviewQueue(StrictQueryParams, generics.ListAPIView):
    serializer_class = VersionSerializer
    pagination_class = PageNumberPagination
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(summary="List versions waiting for review",
                   responses={200: VersionSerializer(many=True), **error_responses(401, 403, 404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        from moecollab_site.roles import is_maintainer

        if not is_maintainer(self.request.user):
            raise forbidden("only maintainers see the review queue")
        return selectors.review_queue()


class RequestListCreate(StrictQueryParams, generics.ListAPIView):
    serializer_class = RequestSerializer
    pagination_class = PageNumberPagination
    permission_classes = READ_OR_AUTH
    parser_classes = UPLOAD_PARSERS + [JSONParser]

    query_params = (OpenApiParameter("status", str, description="open or closed"),)

    def get_queryset(self):
        return selectors.request_list(user=self.request.user,
                                      status=self.request.query_params.get("status"))

    @extend_schema(summary="List requests for experts", parameters=list(query_params),
                   responses={200: RequestSerializer(many=True), **READ})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(summary="Ask for an expert", request=RequestCreateSerializer,
                   responses={201: RequestSerializer, **error_responses(400, 401)})
    def post(self, request):
        data = validated_body(RequestSerializer, request)
        req = services.request_create(user=request.user, **data)
        return Response(RequestSerializer(req).data, status=status.HTTP_201_CREATED)


class RequestDetail(StrictQueryParams, generics.RetrieveAPIView):
    serializer_class = RequestSerializer

    @extend_schema(summary="Get a request for an expert",
                   responses={200: RequestSerializer, **READ})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.request_list(user=self.request.user)


class RequestClose(StrictQueryParams, APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(summary="Close a request for an expert", request=None,
                   responses={200: RequestSerializer, **error_responses(400, 401, 403, 404)},
                   description="Close a request (its author or a maintainer). Takes no body.")
    def post(self, request, pk: int):
        refuse_unknown_fields(request.data, None)
        req = services.request_close(user=request.user,
                                     request=get_object_or_404(ExpertRequest, pk=pk))
        req = selectors.request_list(user=request.user).get(pk=req.pk)  # visible answers only
        return Response(RequestSerializer(req).data)


class DomainLeaderboard(StrictQueryParams, generics.ListAPIView):
    serializer_class = LeaderboardEntrySerializer
    pagination_class = PageNumberPagination

    @extend_schema(summary="Leaderboard of a domain",
                   responses={200: LeaderboardEntrySerializer(many=True), **READ})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        domain = get_object_or_404(Domain, name=self.kwargs["name"])
        return selectors.leaderboard_domain(domain=domain)


class ContributorLeaderboard(StrictQueryParams, generics.ListAPIView):
    serializer_class = LeaderboardEntrySerializer
    pagination_class = PageNumberPagination

    @extend_schema(summary="Leaderboard of contributors",
                   responses={200: LeaderboardEntrySerializer(many=True), **READ})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.leaderboard_contributors()


class NotificationList(StrictQueryParams, generics.ListAPIView):
    serializer_class = NotificationSerializer
    pagination_class = PageNumberPagination
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        return selectors.notifications_for(user=self.request.user)

    @extend_schema(summary="List your notifications",
                   responses={200: NotificationSerializer(many=True), **READ})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(summary="Mark every notification read", request=None,
                   responses={200: NotificationPageSerializer, **error_responses(400, 401, 404)},
                   description="Mark every notification read. Takes no body; answers the first "
                               "page of notifications.")
    def post(self, request):
        refuse_unknown_fields(request.data, None)
        services.notifications_mark_read(user=request.user)
        return self.list(request)


class PlatformDetail(StrictQueryParams, APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(summary="Describe the platform's backbone and limits",
                   responses={200: PlatformSerializer, **error_responses(401)},
                   description="What an uploaded artifact is checked against: the platform's "
                               "backbone (fingerprint, layers, width, layer config) and the "
                               "size caps. `moecollab inspect` checks against it offline.")
    def get(self, request):
        return Response(PlatformSerializer(selectors.platform_description()).data)
