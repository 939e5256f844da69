"""The site's URLs plus views that fail, for the error-page tests (ROOT_URLCONF override)."""
from __future__ import annotations

from django.urls import path
from rest_framework.decorators import api_view

from moecollab_site.urls import handler404, handler500
from moecollab_site.urls import urlpatterns as site_urlpatterns

__all__ = ["handler404", "handler500", "urlpatterns"]


def broken_page(request):
    raise RuntimeError("a bug in a page view")


@api_view(["GET"])
def broken_api(request):
    raise RuntimeError("a bug in an API view")


urlpatterns = [
    path("test-broken/", broken_page),
    path("api/v1/test-broken/", broken_api),
    *site_urlpatterns,
]
