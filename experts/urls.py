from __future__ import annotations

from django.urls import path

from experts import views

urlpatterns = [
    path("", views.index, name="experts-index"),
    path("new/", views.expert_new, name="experts-new"),
    path("review/", views.review_queue, name="experts-review-queue"),
    path("notifications/", views.notifications, name="experts-notifications"),
    path("notifications/read/", views.notifications_read, name="experts-notifications-read"),
    path("domains/", views.domain_list, name="experts-domains"),
    path("domains/new/", views.domain_new, name="experts-domain-new"),
    path("domains/<slug:name>/", views.domain_detail, name="experts-domain"),
    path("domains/<slug:name>/splits/", views.split_upload, name="experts-split-upload"),
    path("domains/<slug:name>/guide/", views.domain_guide, name="experts-domain-guide"),
    path("domains/<slug:name>/splits/<str:kind>/download/", views.split_download,
         name="experts-split-download"),
    path("requests/", views.request_list, name="experts-requests"),
    path("requests/new/", views.request_new, name="experts-request-new"),
    path("requests/<int:pk>/", views.request_detail, name="experts-request"),
    path("requests/<int:pk>/close/", views.request_close, name="experts-request-close"),
    path("requests/<int:pk>/dataset/", views.request_dataset, name="experts-request-dataset"),
    path("<int:pk>/", views.expert_detail, name="experts-detail"),
    path("<int:pk>/edit/", views.expert_edit, name="experts-edit"),
    path("<int:pk>/upload/", views.version_upload, name="experts-upload"),
    path("<int:pk>/train/", views.version_train, name="experts-train"),
    path("<int:pk>/versions/<int:number>/", views.version_detail, name="experts-version"),
    path("<int:pk>/versions/<int:number>/review/", views.version_review,
         name="experts-version-review"),
    path("<int:pk>/versions/<int:number>/download/", views.version_download,
         name="experts-version-download"),
]
