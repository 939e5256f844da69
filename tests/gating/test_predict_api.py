"""Predict refuses clearly without a production model or with bad text lists."""
from __future__ import annotations

import pytest

from tests.helpers import api_client_for

pytestmark = pytest.mark.usefixtures("fresh_serving")


def test_it_answers_503_when_nothing_is_in_production(db, owner):
    for client in (api_client_for(None), api_client_for(owner)):
        response = client.post("/api/v1/predict/", {"texts": ["hello"]}, format="json")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "no_production_model"
        assert "no gating model is in production" in error["message"]


@pytest.mark.parametrize("body, code, fragment", [
    ({"texts": []}, "empty_texts", '"texts" is empty'),
    ({"texts": ["x"] * 65}, "too_many_texts", "has 65 items; at most 64"),
    ({"texts": ["x" * 2001]}, "text_too_long", "texts[0] has 2001 characters; at most 2000"),
    ({"texts": ["ok", "  "]}, "invalid_texts", "texts[1] must be a non-empty string"),
    ({"texts": "just one"}, "invalid_texts", '"texts" must be a list'),
    ({"text": ["x"]}, "invalid_texts", 'send a JSON object {"texts"'),
])
def test_it_refuses_bad_text_lists_with_400(db, body, code, fragment):
    response = api_client_for(None).post("/api/v1/predict/", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code
    assert fragment in response.json()["error"]["message"]


def test_it_takes_the_limit_from_settings(db, settings):
    settings.MOECOLLAB_PREDICT_MAX_TEXTS = 2
    response = api_client_for(None).post("/api/v1/predict/", {"texts": ["a", "b", "c"]},
                                         format="json")
    assert response.status_code == 400
    assert "at most 2 per call" in response.json()["error"]["message"]


def test_it_describes_the_gating_api_in_the_schema(db, client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    for path in ("/api/v1/predict/", "/api/v1/gating/", "/api/v1/gating/{id}/promote/",
                 "/api/v1/gating/rollback/"):
        assert path in schema
    assert "PredictResponse" in schema and "no production model" in schema


def test_it_shows_the_playground_without_a_production_model(db, client):
    response = client.get("/gating/playground/")
    assert response.status_code == 200
    assert b"No gating model is in production yet" in response.content
    response = client.post("/gating/playground/", {"texts": "hello"})
    assert response.status_code == 503
    assert b"no gating model is in production" in response.content
