from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views import defaults
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.throttling import ScopedRateThrottle

from moecollab_site.api import error_responses
from moecollab_site.roles import CONTRIBUTOR, user_add_role
from training.selectors import job_list, workers_alive


class SignUpForm(UserCreationForm):
    email = forms.EmailField(required=True)

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


def home(request):
    context = {
        "recent_jobs": job_list()[:5],
        "workers": workers_alive(),
    }
    return render(request, "home.html", context)


def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        user_add_role(user=user, role=CONTRIBUTOR)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


class ObtainTokenView(ObtainAuthToken):
    """POST username and password, get the API token of that user."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(
        auth=[],  # this is how a client without a token gets one
        request=inline_serializer(
            "TokenRequest",
            {"username": serializers.CharField(), "password": serializers.CharField()},
        ),
        responses={200: inline_serializer("TokenResponse", {"token": serializers.CharField()}),
                   **error_responses(400, 429)},
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class ThrottledLoginView(LoginView):
    """The log-in page, refusing further attempts from a client that failed too often."""

    def _key(self) -> str:
        return f"login-fail:{self.request.META.get('REMOTE_ADDR', '?')}"

    def _limit(self) -> tuple[int, int]:
        count, period = settings.THROTTLE_RATES["auth"].split("/")
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]
        return int(count), seconds

    def post(self, request, *args, **kwargs):
        limit, period = self._limit()
        if cache.get(self._key(), 0) >= limit:
            response = render(request, "registration/login.html", {
                "form": self.get_form(),
                "throttled": f"Too many failed log-ins from your address; try again in "
                             f"{period // 60 or 1} minute(s).",
            }, status=429)
            response["Retry-After"] = str(period)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        key = self._key()
        cache.add(key, 0, timeout=self._limit()[1])
        cache.incr(key)
        return super().form_invalid(form)


def page_not_found(request, exception):
    """404 in the API's JSON error shape under /api/, the site's page everywhere else."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": "not_found",
                                       "message": f"no such API endpoint: {request.path}"}},
                            status=404)
    return defaults.page_not_found(request, exception)
