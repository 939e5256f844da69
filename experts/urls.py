from __future__ import annotations

from django.urls import path

from experts import views

urlpatterns = [
    path("", views.index, name="experts-index"),
]
