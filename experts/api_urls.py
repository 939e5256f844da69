from __future__ import annotations

from django.urls import path

from experts import api

urlpatterns = [
    path("domains/", api.DomainListCreate.as_view(), name="api-domains"),
    path("domains/<slug:name>/", api.DomainDetail.as_view(), name="api-domain"),
    path("domains/<slug:name>/splits/", api.DomainSplitUpload.as_view(), name="api-splits"),
    path("experts/", api.ExpertListCreate.as_view(), name="api-experts"),
    path("experts/<int:pk>/", api.ExpertDetail.as_view(), name="api-expert"),
    path("experts/<int:pk>/train/", api.ExpertTrain.as_view(), name="api-expert-train"),
    path("experts/<int:pk>/versions/", api.VersionListUpload.as_view(), name="api-versions"),
    path("experts/<int:pk>/versions/<int:number>/", api.VersionDetail.as_view(),
         name="api-version"),
    path("experts/<int:pk>/versions/<int:number>/review/", api.VersionReview.as_view(),
         name="api-version-review"),
    path("experts/<int:pk>/versions/<int:number>/download/", api.VersionDownload.as_view(),
         name="api-version-download"),
    path("review-queue/", api.ReviewQueue.as_view(), name="api-review-queue"),
    path("requests/", api.RequestListCreate.as_view(), name="api-requests"),
    path("requests/<int:pk>/", api.RequestDetail.as_view(), name="api-request"),
    path("requests/<int:pk>/close/", api.RequestClose.as_view(), name="api-request-close"),
    path("leaderboards/domains/<slug:name>/", api.DomainLeaderboard.as_view(),
         name="api-leaderboard-domain"),
    path("leaderboards/contributors/", api.ContributorLeaderboard.as_view(),
         name="api-leaderboard-contributors"),
    path("notifications/", api.NotificationList.as_view(), name="api-notifications"),
    path("platform/", api.PlatformDetail.as_view(), name="api-platform"),
]
