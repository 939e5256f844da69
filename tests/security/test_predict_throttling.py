"""Predict is throttled per client, before the view does any work, whoever calls it."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.throttling import ScopedRateThrottle

from gating import serving
from gating.api import Predict
from tests.helpers import api_client_for

URL = "/api/v1/predict/"


@pytest.fixture
def strict_predict_rate(settings, monkeypatch):
    rates = {**settings.THROTTLE_RATES, "predict": "3/min"}
    settings.THROTTLE_RATES = rates
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", rates)


@pytest.fixture(autouse=True)
def fresh_serving():
    serving.reset()
    yield
    serving.reset()


def _predict(client, **extra):
    return client.post(URL, {"texts": ["hello"]}, format="json", **extra)


def test_it_answers_429_with_the_error_json_once_the_rate_is_spent(db, strict_predict_rate):
    client = api_client_for(None)
    codes = [_predict(client).status_code for _ in range(3)]
    assert codes == [503, 503, 503]  # nothing in production: the view ran, and answered
    blocked = _predict(client)
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "throttled"
    assert "throttled" in blocked.json()["error"]["message"].lower()
    assert int(blocked["Retry-After"]) > 0


def test_it_throttles_before_the_view_runs(db, strict_predict_rate, monkeypatch):
    calls = []
    monkeypatch.setattr(serving, "predict", lambda texts: calls.append(texts) or {})
    client = api_client_for(None)
    codes = [_predict(client).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    assert len(calls) == 3, "the view must not run once the client is throttled"


def test_it_counts_bad_requests_too(db, strict_predict_rate):
    client = api_client_for(None)
    for _ in range(3):
        assert client.post(URL, {"texts": []}, format="json").status_code == 400
    assert client.post(URL, {"texts": []}, format="json").status_code == 429


def test_it_throttles_signed_in_users_per_user_and_strangers_per_address(db, owner, stranger,
                                                                         strict_predict_rate):
    alice = api_client_for(owner)
    for _ in range(3):
        _predict(alice)
    assert _predict(alice).status_code == 429
    # A new address, or another user, has its own budget.
    assert _predict(api_client_for(stranger)).status_code == 503
    assert _predict(api_client_for(None), REMOTE_ADDR="10.0.0.9").status_code == 503
    # Alice cannot escape by changing address: signed-in users are counted by account.
    assert _predict(alice, REMOTE_ADDR="10.0.0.10").status_code == 429


def test_it_does_not_leave_the_playground_as_a_way_around_the_throttle(db,
                                                                       strict_predict_rate):
    """The playground form runs the same model: it shares the predict budget."""
    client = Client()
    codes = [client.post("/gating/playground/", {"texts": "hello"}).status_code
             for _ in range(3)]
    assert codes == [503, 503, 503]
    blocked = client.post("/gating/playground/", {"texts": "hello"})
    assert blocked.status_code == 429
    assert b"Too many predictions; try again in" in blocked.content
    assert int(blocked["Retry-After"]) > 0
    assert _predict(api_client_for(None)).status_code == 429


def test_it_declares_the_throttle_on_the_view():
    assert ScopedRateThrottle in Predict.throttle_classes
    assert Predict.throttle_scope == "predict"
