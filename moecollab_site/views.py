from __future__ import annotations

import logging

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.contrib.auth.views import LoginView, LogoutView, PasswordChangeView
from django.core.cache import cache
from django.http import HttpResponseServerError, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse_lazy
from django.views import defaults
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from experts.models import Domain, Expert
from gating.selectors import production_promotion
from moecollab_site import services
from moecollab_site.api import StrictQueryParams, error_responses, refuse_unknown_fields
from moecollab_site.roles import CONTRIBUTOR, user_add_role
from moecollab_site.throttling import client_address, parse_rate
from training.selectors import job_list, workers_alive


class SignUpForm(UserCreationForm):
    email = forms.EmailField(required=True)

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


def home(request):
    """What the platform is, the production model and its playground, and for a signed-in
    contributor with no expert yet the steps to a first one."""
    promotion = production_promotion()
    production = promotion.version if promotion else None
    context = {
        "recent_jobs": job_list(user=request.user)[:5],
        "workers": workers_alive(),
        "production": production,
        "production_promotion": promotion,
        "production_members": production.members_in_order() if production else [],
        "first_steps": (request.user.is_authenticated
                        and not Expert.objects.filter(owner=request.user).exists()),
        "domains": list(Domain.objects.order_by("name")) if request.user.is_authenticated else [],
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
        messages.success(request, f"Welcome, {user.username}: you are a contributor now. "
                                  "The steps below take you to your first expert.")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


class ObtainTokenView(StrictQueryParams, ObtainAuthToken):
    """POST username and password, get the API token of that user; DELETE revokes it."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    def get_permissions(self):
        if self.request.method == "DELETE":
            return [permissions.IsAuthenticated()]
        return super().get_permissions()

    @extend_schema(
        summary="Get your API token",
        auth=[],  # this is how a client without a token gets one
        request=inline_serializer(
            "TokenRequest",
            {"username": serializers.CharField(), "password": serializers.CharField()},
        ),
        responses={200: inline_serializer("TokenResponse", {"token": serializers.CharField()}),
                   **error_responses(400, 429)},
    )
    def post(self, request, *args, **kwargs):
        refuse_unknown_fields(request.data, self.get_serializer())
        return super().post(request, *args, **kwargs)

    @extend_schema(
        summary="Revoke your API token",
        request=None, responses={204: None, **error_responses(401, 429)},
        description="Revoke your API token (the one this request sends, or your session's "
                    "user's): it answers 401 from now on, and the next POST here issues a new "
                    "one. Logging out of the site and changing the password revoke it too.")
    def delete(self, request, *args, **kwargs):
        refuse_unknown_fields(request.data, None)  # takes no body
        services.token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ThrottledLoginView(LoginView):
    """The log-in page, refusing further attempts from a client that failed too often."""

    def _key(self) -> str:
        return f"login-fail:{client_address(self.request)}"

    def _limit(self) -> tuple[int, int]:
        return parse_rate(settings.THROTTLE_RATES["auth"])

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


class TokenRevokingLogoutView(LogoutView):
    """Logging out ends the API token too: a token left behind would outlive the session."""

    def post(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            services.token_revoke(user=request.user)
        return super().post(request, *args, **kwargs)


@login_required
def account(request):
    token = Token.objects.filter(user=request.user).first()
    return render(request, "registration/account.html", {"token": token})


@login_required
@require_POST
def account_token(request):
    """Create or replace (action=rotate) or revoke (action=revoke) one's own API token."""
    action = request.POST.get("action")
    if action == "rotate":
        token = services.token_rotate(user=request.user)
        return render(request, "registration/account.html",
                      {"token": token, "new_key": token.key})
    if action == "revoke":
        services.token_revoke(user=request.user)
        messages.success(request, "API token revoked: it no longer works anywhere.")
        return redirect("account")
    return render(request, "registration/account.html",
                  {"token": Token.objects.filter(user=request.user).first(),
                   "error": "Unknown action; use the buttons below."}, status=400)


class TokenRotatingPasswordChangeView(PasswordChangeView):
    """Django's password change, which also replaces the API token: whoever knew the old
    password may have taken the token with it."""

    template_name = "registration/password_change_form.html"
    success_url = reverse_lazy("account")

    def form_valid(self, form):
        super().form_valid(form)  # saves it and keeps this browser signed in
        token = services.token_rotate(user=self.request.user)
        # The new key is shown on this page only (a redirect would carry it in a message).
        return render(self.request, "registration/account.html", {
            "token": token, "new_key": token.key,
            "notice": "Your password was changed, and your API token was replaced."})


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request, exception):
    """404 in the API's JSON error shape under /api/, the site's page everywhere else."""
    if _is_api(request):
        return JsonResponse({"error": {"code": "not_found",
                                       "message": f"no such API endpoint: {request.path}"}},
                            status=404)
    return defaults.page_not_found(request, exception)


SERVER_ERROR_MESSAGE = ("the server could not finish this request; the error has been logged "
                        "for the maintainers: try again in a moment")
# The last resort when even 500.html cannot be rendered (a broken template, a missing URL).
_PLAIN_500 = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Something "
              "went wrong · MoECollab</title></head><body><main><h1>Something went wrong on our "
              "side</h1><p>The server could not finish this request; try again in a moment."
              "</p><p><a href=\"/\">Home page</a></p></main></body></html>")


def server_error(request):
    """500 as JSON under /api/, else the site's page, rendered without a request context.

    Without the request no context processor runs and no session is read, so the page renders
    even when the error was the database going away.
    """
    if _is_api(request):
        return JsonResponse({"error": {"code": "server_error", "message": SERVER_ERROR_MESSAGE}},
                            status=500)
    try:
        body = render_to_string("500.html")
    except Exception:  # noqa: BLE001 - an error page must answer whatever broke
        logging.getLogger(__name__).exception("500.html could not be rendered")
        body = _PLAIN_500
    return HttpResponseServerError(body)
