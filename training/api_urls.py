from __future__ import annotations

from django.urls import path

from training import api

urlpatterns = [
    path("jobs/", api.JobListCreate.as_view(), name="api-jobs"),
    path("jobs/<int:pk>/", api.JobDetail.as_view(), name="api-job"),
    path("jobs/<int:pk>/cancel/", api.JobCancel.as_view(), name="api-job-cancel"),
]
