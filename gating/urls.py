from __future__ import annotations

from django.urls import path

from gating import views

urlpatterns = [
    path("", views.index, name="gating-index"),
]
