from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from experts import views as expert_views
from moecollab_site import views
from moecollab_site.health import healthz

handler404 = "moecollab_site.views.page_not_found"  # JSON under /api/
handler500 = "moecollab_site.views.server_error"  # JSON under /api/, static page elsewhere

api_v1 = [
    path("auth/token/", views.ObtainTokenView.as_view(), name="api-token"),
    path("", include("training.api_urls")),
    path("", include("experts.api_urls")),
    path("", include("gating.api_urls")),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", healthz, name="healthz"),
    path("signup/", views.signup, name="signup"),
    path("login/", views.ThrottledLoginView.as_view(), name="login"),
    path("logout/", views.TokenRevokingLogoutView.as_view(), name="logout"),
    path("account/", views.account, name="account"),
    path("account/token/", views.account_token, name="account-token"),
    path("account/password/", views.TokenRotatingPasswordChangeView.as_view(),
         name="password-change"),
    path("experts/", include("experts.urls")),
    path("leaderboards/", expert_views.leaderboards, name="leaderboards"),
    path("gating/", include("gating.urls")),
    path("jobs/", include("training.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
