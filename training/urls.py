from __future__ import annotations

from django.urls import path

from training import views

urlpatterns = [
    path("", views.job_list_page, name="job-list"),
    path("start/", views.job_start, name="job-start"),
    path("<int:pk>/", views.job_detail_page, name="job-detail"),
    path("<int:pk>/status.json", views.job_status_json, name="job-status"),
    path("<int:pk>/cancel/", views.job_cancel, name="job-cancel"),
]
