"""Hostile JSON bodies get a 4xx in the API's error shape, never a 5xx or Django's HTML page.

Python's json parser raises RecursionError on deep nesting and ValueError on huge integers, it
accepts 1e999 (inf) and escaped lone surrogates, and Django refuses a body over
DATA_UPLOAD_MAX_MEMORY_SIZE with its own HTML 400 page. Every endpoint that reads a JSON body,
DRF's token view included, reads it through one parser that refuses all of these.
"""
from __future__ import annotations

import json

import pytest

from experts.models import Domain, Expert
from gating.serving import reset as serving_reset
from tests.helpers import api_client_for
from tests.security.routes import api_write_endpoints, fill

DEEP = "[" * 100_000 + "]" * 100_000
# Every endpoint that reads a JSON body: (method, pattern).
JSON_ENDPOINTS = [
    ("post", "api/v1/predict/"),
    ("post", "api/v1/auth/token/"),
    ("post", "api/v1/experts/"),
    ("post", "api/v1/gating/"),
    ("post", "api/v1/domains/"),
    ("patch", "api/v1/experts/<int:pk>/"),
    ("post", "api/v1/experts/<int:pk>/versions/<int:number>/review/"),
    ("post", "api/v1/requests/"),
    ("post", "api/v1/jobs/"),
]


@pytest.fixture(autouse=True)
def no_production_model():
    serving_reset()
    yield
    serving_reset()


def _path(pattern: str, world: dict) -> str:
    pk = (world["request"].pk if "requests/" in pattern else world["job"].pk
          if "jobs/" in pattern else world["gating"].pk if "gating/" in pattern
          else world["expert"].pk)
    return fill(pattern, {"pk": pk, "number": world["pending"].number,
                          "name": world["domain"].name})


def _send(world, method: str, pattern: str, body: str | bytes):
    client = api_client_for(world["maintainer"])
    return client.generic(method.upper(), _path(pattern, world), body,
                          content_type="application/json")


def _error(response, status: int = 400) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]


@pytest.mark.parametrize(("method", "pattern"), JSON_ENDPOINTS)
def test_it_refuses_a_body_nested_100000_levels_deep(method, pattern, world):
    error = _error(_send(world, method, pattern, DEEP))
    assert error == {"code": "parse_error", "message": "the request body nests arrays and "
                                                       "objects more than 32 levels deep"}


@pytest.mark.parametrize("body, fragment", [
    ('{"texts": [' + "7" * 5000 + "]}", "holds an integer of more than 4300 digits"),
    ('{"texts": [1e999]}', "holds the number 1e999, which is not a finite number"),
    ('{"texts": [NaN]}', "holds the number NaN, which is not a finite number"),
    ('{"texts": ' + "[" * 40 + "]" * 40 + "}", "more than 32 levels deep"),
])
@pytest.mark.parametrize(("method", "pattern"), JSON_ENDPOINTS)
def test_it_refuses_numbers_and_nesting_json_accepts_but_later_code_cannot_use(
        method, pattern, body, fragment, world):
    assert fragment in _error(_send(world, method, pattern, body))["message"]


def test_it_refuses_a_lone_surrogate_in_a_predict_text_naming_the_text(world):
    response = _send(world, "post", "api/v1/predict/",
                     json.dumps({"texts": ["fine", "a \ud800 b"]}))
    error = _error(response)
    assert error["message"].startswith("texts[1] holds a lone surrogate (\\ud800), which is "
                                       "not text"), error


@pytest.mark.parametrize(("method", "pattern", "body", "where"), [
    ("post", "api/v1/auth/token/", {"username": "maya\udfff", "password": "x"}, "username"),
    ("post", "api/v1/experts/", {"domain": "news", "name": "n\ud800"}, "name"),
    ("post", "api/v1/domains/", {"name": "legal", "labels": ["a", "\udc00"]}, "labels[1]"),
    ("patch", "api/v1/experts/<int:pk>/", {"description": "\ud83d"}, "description"),
    ("post", "api/v1/requests/", {"title": "t", "\ud800": 1}, "a key of the request body"),
])
def test_it_refuses_a_lone_surrogate_anywhere_in_a_body(method, pattern, body, where, world):
    before = (Domain.objects.count(), list(Expert.objects.values_list("name", "description")))
    error = _error(_send(world, method, pattern, json.dumps(body)))
    assert error["message"].startswith(f"{where} holds a lone surrogate"), error
    assert (Domain.objects.count(),
            list(Expert.objects.values_list("name", "description"))) == before


@pytest.mark.parametrize("pattern", ["api/v1/predict/", "api/v1/auth/token/",
                                     "api/v1/experts/", "api/v1/gating/"])
def test_it_answers_a_body_over_the_memory_limit_with_413_in_the_error_shape(pattern, world):
    body = json.dumps({"texts": ["x" * 1000] * 3000})  # 3 MB, over Django's 2.5 MiB
    error = _error(_send(world, "post", pattern, body), status=413)
    assert error["code"] == "too_large"
    assert error["message"].startswith("the request body is over the 2.5 MiB limit")


@pytest.mark.parametrize("endpoint", api_write_endpoints())
def test_it_never_answers_5xx_to_a_deep_body_on_any_write_endpoint(endpoint, world):
    """Whatever a view does with its body (some read none), a deep one is no 5xx; a refusal
    is in the error shape."""
    method, pattern = endpoint.split(" ", 1)
    response = _send(world, method.lower(), pattern, DEEP)
    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400:
        assert response.json()["error"]["message"]


def test_it_documents_413_on_every_operation_that_takes_a_body(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                assert "413" in operation["responses"], f"{method.upper()} {path}"
