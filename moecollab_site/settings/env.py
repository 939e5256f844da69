"""Reading settings from the environment, with errors that name the variable."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()

_DB_SCHEMES = {"sqlite", "postgres", "postgresql", "pgsql", "psql"}
_BROKER_SCHEMES = {"filesystem", "redis", "rediss", "amqp", "pyamqp", "memory"}


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    """An integer variable; a malformed value stops start-up naming the variable."""
    raw = env.str(name, default=str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_rate(name: str, default: str) -> str:
    """A throttle rate like 20/min (DRF's format: a count per second, minute, hour or day)."""
    raw = env.str(name, default=default).strip()
    if not re.fullmatch(r"[0-9]+/(s|sec|second|m|min|minute|h|hour|d|day)", raw):
        raise ImproperlyConfigured(f"{name} must look like 20/min (a count per s, min, h "
                                   f"or day), got {raw!r}")
    return raw


def env_bool(name: str, default: bool) -> bool:
    raw = env.str(name, default="1" if default else "0").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_database(default: str) -> dict:
    """DATABASE_URL parsed by django-environ, with its scheme checked first."""
    url = env.str("DATABASE_URL", default=default)
    scheme = urlparse(url).scheme
    if scheme not in _DB_SCHEMES:
        raise ImproperlyConfigured(
            f"DATABASE_URL must start with one of {sorted(_DB_SCHEMES)}://, got {url!r}"
        )
    try:
        config = environ.Env.db_url_config(url)
    except (ValueError, KeyError) as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is malformed: {exc}") from None
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"DATABASE_URL names no database: {url!r}")
    return config


def env_broker(default: str) -> str:
    url = env.str("CELERY_BROKER_URL", default=default)
    scheme = urlparse(url).scheme
    if scheme not in _BROKER_SCHEMES:
        raise ImproperlyConfigured(
            f"CELERY_BROKER_URL must start with one of {sorted(_BROKER_SCHEMES)}://, got {url!r}"
        )
    return url


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of `choices`; anything else stops start-up naming the variable and the choices."""
    value = env.str(name, default=default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value
