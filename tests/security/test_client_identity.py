"""A client is its socket address: X-Forwarded-For changes nothing unless a proxy is trusted.

Every throttled endpoint is hit with a new forged X-Forwarded-For on each request, as a password
guesser or a predict flooder would send it; each must still count them as one client.
"""
from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.throttling import ScopedRateThrottle

from moecollab_site.throttling import client_address
from tests.helpers import api_client_for

LIMIT = 3


@pytest.fixture
def strict_rates(settings, monkeypatch):
    rates = {**settings.THROTTLE_RATES, "auth": f"{LIMIT}/min", "predict": f"{LIMIT}/min"}
    settings.THROTTLE_RATES = rates
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", rates)


pytestmark = pytest.mark.usefixtures("fresh_serving")


@pytest.fixture
def one_trusted_proxy(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}


def _token(client, **extra):
    return client.post("/api/v1/auth/token/", {"username": "alice", "password": "wrong"},
                       **extra).status_code


def _login(client, **extra):
    return client.post("/login/", {"username": "alice", "password": "wrong"},
                       **extra).status_code


def _predict(client, **extra):
    return client.post("/api/v1/predict/", json.dumps({"texts": ["hello"]}),
                       content_type="application/json", **extra).status_code


def _playground(client, **extra):
    return client.post("/gating/playground/", {"texts": "hello"}, **extra).status_code


ENDPOINTS = {
    # what an allowed attempt answers: a wrong password, or no production model yet
    "token": (_token, 400),
    "login": (_login, 200),
    "predict": (_predict, 503),
    "playground": (_playground, 503),
}


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_it_ignores_a_rotating_forwarded_for_header_on_every_throttled_endpoint(
        name, owner, strict_rates):
    send, allowed = ENDPOINTS[name]
    client = Client()
    codes = [send(client, HTTP_X_FORWARDED_FOR=f"198.51.100.{i}") for i in range(LIMIT + 3)]
    assert codes == [allowed] * LIMIT + [429] * 3, name


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_it_counts_the_last_hop_when_one_proxy_is_trusted(name, owner, strict_rates,
                                                          one_trusted_proxy):
    """Behind one reverse proxy the socket address is the proxy's; the client is the hop the
    proxy appended, and whatever the client wrote before it is ignored."""
    send, allowed = ENDPOINTS[name]
    client = Client()
    codes = [send(client, REMOTE_ADDR="10.0.0.2",
                  HTTP_X_FORWARDED_FOR=f"198.51.100.{i}, 203.0.113.7")
             for i in range(LIMIT + 1)]
    assert codes == [allowed] * LIMIT + [429], name
    # Another client behind the same proxy has its own budget.
    assert send(client, REMOTE_ADDR="10.0.0.2",
                HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.8") == allowed


def test_it_takes_the_socket_address_by_default(rf):
    request = rf.get("/", REMOTE_ADDR="192.0.2.5", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert client_address(request) == "192.0.2.5"


def test_it_takes_the_hop_the_trusted_proxies_saw(rf, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 2}
    request = rf.get("/", REMOTE_ADDR="10.0.0.2",
                     HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.9, 10.0.0.1")
    assert client_address(request) == "198.51.100.9"
    assert client_address(rf.get("/", REMOTE_ADDR="10.0.0.2")) == "10.0.0.2"


def test_it_reads_the_trusted_proxy_count_from_the_environment(settings):
    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == 0


def test_it_throttles_signed_in_clients_by_account_whatever_the_header(owner, strict_rates):
    client = api_client_for(owner)
    codes = [_predict(client, HTTP_X_FORWARDED_FOR=f"198.51.100.{i}") for i in range(LIMIT + 1)]
    assert codes[-1] == 429
