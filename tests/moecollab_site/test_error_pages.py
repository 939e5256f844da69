"""With DEBUG off, errors are the site's own: a branded 404 and 500 page, and under /api/ the one
JSON error shape; never Django's debug page, a traceback or a Python class name."""
from __future__ import annotations

import pytest
from django.test import Client, RequestFactory, override_settings

from moecollab_site import views

ERROR_URLS = "tests.moecollab_site.error_urls"


@pytest.fixture
def client_no_raise() -> Client:
    """A client that gets the 500 response a browser would, instead of the exception."""
    return Client(raise_request_exception=False)


def _assert_not_debug_page(html: str) -> None:
    assert "Django" not in html and "Traceback" not in html and "URLconf" not in html
    assert "RuntimeError" not in html


@override_settings(DEBUG=False)
def test_it_shows_the_branded_404_page_for_an_unknown_page(client, db):
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "<title>Page not found · MoECollab</title>" in html
    assert 'class="topbar"' in html  # the site's own frame, with its navigation
    assert "/no/such/page/" in html and 'href="/"' in html
    assert "log in" in html  # an anonymous visitor may be missing a page behind the log-in
    _assert_not_debug_page(html)


@override_settings(DEBUG=False)
def test_it_shows_the_signed_in_user_on_the_404_page(client, owner):
    client.force_login(owner)
    html = client.get("/experts/999999999/").content.decode()
    assert "Page not found" in html and owner.username in html
    assert "are visible only when you are logged in" not in html


@override_settings(DEBUG=False)
def test_it_answers_json_404_under_the_api(client, db):
    response = client.get("/api/v1/no-such-endpoint/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"error": {"code": "not_found", "message":
                                         "no such API endpoint: /api/v1/no-such-endpoint/"}}


@override_settings(DEBUG=False, ROOT_URLCONF=ERROR_URLS)
def test_it_shows_the_branded_500_page_when_a_page_view_fails(client_no_raise, db):
    response = client_no_raise.get("/test-broken/")
    assert response.status_code == 500
    html = response.content.decode()
    assert "<title>Something went wrong · MoECollab</title>" in html
    assert "Try again in a moment" in html and 'class="topbar"' in html
    _assert_not_debug_page(html)
    assert "a bug in a page view" not in html  # the error's text is for the logs


@override_settings(DEBUG=False, ROOT_URLCONF=ERROR_URLS)
def test_it_answers_json_500_in_the_one_error_shape_under_the_api(client_no_raise, db):
    response = client_no_raise.get("/api/v1/test-broken/")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and error["code"] == "server_error"
    assert "try again" in error["message"]
    assert "RuntimeError" not in error["message"] and "a bug" not in error["message"]


@override_settings(DEBUG=False)
def test_it_renders_the_500_page_without_touching_the_database(owner,
                                                               django_assert_num_queries):
    """The error may be the database being away: the page must not need it."""
    request = RequestFactory().get("/anything/")
    request.user = owner  # a signed-in user whose details would need a query
    with django_assert_num_queries(0):
        response = views.server_error(request)
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong on our side" in html
    # it cannot know who is signed in, so it offers neither "Log in" nor "Sign up"
    assert "Log in" not in html and "Sign up" not in html


@override_settings(DEBUG=False, TEMPLATES=[{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [],
    "APP_DIRS": False}])
def test_it_still_answers_a_plain_500_page_when_the_template_cannot_load(db):
    response = views.server_error(RequestFactory().get("/anything/"))
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong on our side" in html and "TemplateDoesNotExist" not in html
