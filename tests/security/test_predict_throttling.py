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


pytestmark = pytest.mark.usefixtures("fresh_serving")


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
    monkeypatch.setattr(serving, "predict", lambda texts, **_: calls.append(texts) or {})
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


# Work, not only calls ------------------------------------------------------------------------


@pytest.fixture
def small_work_budget(settings):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "predict_texts": "10/min",
                               "predict_chars": "200/min"}


@pytest.fixture
def answered(monkeypatch):
    """Predictions without a model; records the texts each call ran on."""
    calls: list[list[str]] = []

    def predict(texts, **_):
        calls.append(texts)
        return {"gating_version": 1, "gating_version_id": 1, "ms": 1.0,
                "predictions": [{"domain": "d", "label": "l", "confidence": 1.0,
                                 "experts": []} for _ in texts]}

    monkeypatch.setattr(serving, "predict", predict)
    return calls


def _texts(client, n: int, *, chars: int = 5, **extra):
    return client.post(URL, {"texts": ["x" * chars] * n}, format="json", **extra)


def test_it_bounds_the_texts_a_client_sends_per_minute(db, small_work_budget, answered):
    client = api_client_for(None)
    assert [_texts(client, 4).status_code for _ in range(2)] == [200, 200]
    blocked = _texts(client, 4)
    assert blocked.status_code == 429, "8 + 4 texts is over the budget of 10 per minute"
    error = blocked.json()["error"]
    assert error["code"] == "throttled"
    assert "at most 10 texts per minute and 200 characters per minute" in error["message"]
    assert 0 < int(blocked["Retry-After"]) <= 60
    # The refused call cost nothing: what is left of the budget still serves.
    assert _texts(client, 2).status_code == 200
    assert _texts(client, 1).status_code == 429
    assert [len(texts) for texts in answered] == [4, 4, 2]
    # Another client has its own budget.
    assert _texts(client, 4, REMOTE_ADDR="10.0.0.9").status_code == 200


def test_a_request_that_sets_top_k_pays_for_each_expert_it_asks_for(db, small_work_budget,
                                                                     answered):
    client = api_client_for(None)
    two = {"texts": ["x"] * 2, "top_k": 2}
    assert [client.post(URL, two, format="json").status_code for _ in range(2)] == [200, 200]
    blocked = client.post(URL, two, format="json")
    assert blocked.status_code == 429, "3 x 2 texts x 2 experts is over the budget of 10"
    assert "once per expert it asks for" in blocked.json()["error"]["message"]
    assert _texts(client, 2).status_code == 200  # without top_k a text counts once: 8 + 2
    assert _texts(client, 1).status_code == 429


def test_it_bounds_the_characters_a_client_sends_per_minute(db, small_work_budget, answered):
    client = api_client_for(None)
    assert _texts(client, 1, chars=150).status_code == 200
    blocked = _texts(client, 1, chars=60)
    assert blocked.status_code == 429, "210 characters is over the budget of 200"
    assert _texts(client, 1, chars=50).status_code == 200


def test_it_counts_signed_in_users_by_account_for_work_too(db, owner, small_work_budget,
                                                           answered):
    alice = api_client_for(owner)
    assert _texts(alice, 10).status_code == 200
    assert _texts(alice, 1, REMOTE_ADDR="10.0.0.10").status_code == 429


def test_it_shares_the_work_budget_with_the_playground(db, small_work_budget, answered):
    client = Client()
    page = client.post("/gating/playground/", {"texts": "\n".join(["hello"] * 8)})
    assert page.status_code == 200
    blocked = client.post("/gating/playground/", {"texts": "hello\nhello\nhello"})
    assert blocked.status_code == 429
    assert b"Too much work asked for" in blocked.content
    assert int(blocked["Retry-After"]) > 0
    assert _texts(api_client_for(None), 3).status_code == 429
    assert _texts(api_client_for(None), 2).status_code == 200


def test_it_charges_no_work_for_a_refused_text_list(db, small_work_budget, answered):
    client = api_client_for(None)
    assert client.post(URL, {"texts": ["x"] * 65}, format="json").status_code == 400
    assert _texts(client, 10).status_code == 200
