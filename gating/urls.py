from __future__ import annotations

from django.urls import path

from gating import views

urlpatterns = [
    path("", views.index, name="gating-index"),
    path("dashboard/", views.index, name="gating-dashboard"),
    path("train/", views.train, name="gating-train"),
    path("rollback/", views.rollback, name="gating-rollback"),
    path("playground/", views.playground, name="gating-playground"),
    path("<int:pk>/", views.detail, name="gating-detail"),
    path("<int:pk>/promote/", views.promote, name="gating-promote"),
]
