"""Who a client is, and how much work it may ask for: one rule for every throttle of the site.

A client is its socket address. Only when REST_FRAMEWORK["NUM_PROXIES"] (the environment's
MOECOLLAB_TRUSTED_PROXIES) says that many reverse proxies stand in front of the site is the
address taken from X-Forwarded-For, counting that many hops from the right: the hops a client
writes itself come first and are ignored. DRF's throttles read the same setting.
"""
from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def client_address(request) -> str:
    """The client's IP address (DRF's rule, so pages and API throttles agree)."""
    return BaseThrottle().get_ident(request) or "unknown"


def client_key(request) -> str:
    """Signed-in users are counted by account (any address), everyone else by address."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"addr:{client_address(request)}"


def parse_rate(rate: str) -> tuple[int, int]:
    """'20/min' -> (20, 60): DRF's rate format, count per second, minute, hour or day."""
    count, period = rate.split("/")
    return int(count), PERIODS[period[0]]


class WorkThrottle:
    """Bounds the work a client asks for per period, e.g. texts and characters per minute.

    Like DRF's SimpleRateThrottle (a history per client in the shared cache), but each entry
    weighs what its request asked for, so a budget counts work, not calls. Each unit has its
    rate in settings.THROTTLE_RATES under "<scope>_<unit>".
    """

    def __init__(self, scope: str, units: tuple[str, ...]):
        self.scope = scope
        self.units = units

    def rates(self) -> dict[str, tuple[int, int]]:
        return {u: parse_rate(settings.THROTTLE_RATES[f"{self.scope}_{u}"]) for u in self.units}

    def charge(self, request, work: dict[str, int]) -> int | None:
        """Record the work and return None if the client's budget allows it, else the seconds
        until it does (nothing is recorded then: a refused request costs no work)."""
        rates = self.rates()
        key = f"work_{self.scope}_{client_key(request)}"
        now = time.time()
        longest = max(period for _, period in rates.values())
        history = [(t, spent) for t, spent in cache.get(key, []) if t > now - longest]
        wait = 0.0
        for unit, (limit, period) in rates.items():
            recent = [(t, spent[unit]) for t, spent in history if t > now - period]
            excess = sum(n for _, n in recent) + work[unit] - limit
            # Oldest entries leave the window first: wait until enough of them have.
            for t, n in recent:
                if excess <= 0:
                    break
                excess -= n
                wait = max(wait, t + period - now)
            if excess > 0:  # more than a whole period's budget in one request
                wait = max(wait, period)
        if wait > 0:
            return max(1, int(wait + 0.999))
        history.append((now, {u: work[u] for u in self.units}))
        cache.set(key, history, longest)
        return None


# Texts and characters of predict calls (the API and the playground share the budget).
PREDICT_WORK = WorkThrottle("predict", units=("texts", "chars"))


def predict_work(texts: list[str], *, top_k: int | None = None) -> dict[str, int]:
    """The work of one predict call. A request that sets top_k asks each text to run through
    that many experts (a LoRA expert is a whole backbone pass each), so its texts count top_k
    times; without it the model's own top_k is the platform's choice and a text counts once."""
    return {"texts": len(texts) * (top_k or 1), "chars": sum(len(t) for t in texts)}


def predict_budget_message() -> str:
    rates = PREDICT_WORK.rates()
    per = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
    (texts, p_texts), (chars, p_chars) = rates["texts"], rates["chars"]
    return (f"too much work asked for: each client may send at most {texts} texts per "
            f"{per[p_texts]} and {chars} characters per {per[p_chars]} (a request that sets top_k "
            "counts each text once per expert it asks for)")
