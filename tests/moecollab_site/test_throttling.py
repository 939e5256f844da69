"""Log-in and token creation slow down password guessing."""
from __future__ import annotations

import pytest
from rest_framework.throttling import ScopedRateThrottle


@pytest.fixture
def strict_auth_rate(settings, monkeypatch):
    rates = {**settings.THROTTLE_RATES, "auth": "3/min"}
    settings.THROTTLE_RATES = rates
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", rates)


def test_it_refuses_log_ins_after_repeated_failures(client, owner, strict_auth_rate):
    for _ in range(3):
        failed = client.post("/login/", {"username": "alice", "password": "wrong"})
        assert failed.status_code == 200
    blocked = client.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert blocked.status_code == 429
    assert "Too many failed log-ins" in blocked.content.decode()
    assert blocked["Retry-After"] == "60"


def test_it_does_not_count_successful_log_ins(client, owner, strict_auth_rate):
    for _ in range(5):
        assert client.post("/login/", {"username": "alice", "password": "pw-alice"}
                           ).status_code == 302
        client.post("/logout/")


def test_it_throttles_token_requests(client, owner, strict_auth_rate):
    codes = [client.post("/api/v1/auth/token/", {"username": "alice", "password": "x"}
                         ).status_code for _ in range(4)]
    assert codes == [400, 400, 400, 429]
    body = client.post("/api/v1/auth/token/", {"username": "alice", "password": "x"}).json()
    assert body["error"]["code"] == "throttled"
