from __future__ import annotations

from django.urls import path

from gating import api

urlpatterns = [
    path("gating/", api.GatingListCreate.as_view(), name="api-gating"),
    path("gating/production/", api.GatingProduction.as_view(), name="api-gating-production"),
    path("gating/rollback/", api.GatingRollback.as_view(), name="api-gating-rollback"),
    path("gating/<int:pk>/", api.GatingDetail.as_view(), name="api-gating-detail"),
    path("gating/<int:pk>/promote/", api.GatingPromote.as_view(), name="api-gating-promote"),
    path("predict/", api.Predict.as_view(), name="api-predict"),
]
