"""Which platform a command talks to, and with which token."""
from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from moecollab_cli.client import Api, ApiError
from moecollab_cli.config import TOKEN_ENV, URL_ENV, Login, load_login
from moecollab_cli.output import CliError


def normalize_url(url: str) -> str:
    """http(s)://host[:port][/prefix] without a trailing slash; anything else is refused."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"not a platform URL: {url!r} (expected http://host:port or "
                       "https://host)", code="usage")
    if parts.query or parts.fragment:
        raise CliError(f"a platform URL has no query or fragment: {url!r}", code="usage")
    return url


@dataclass
class Session:
    api: Api
    username: str | None  # known when the token came from `moecollab login --username`
    login: Login | None  # the stored log-in, when it is for this URL


def open_session(url: str | None = None, *, need_token: bool = False) -> Session:
    """The platform from --url, MOECOLLAB_URL or the stored log-in, with its token.

    The stored token goes only to the URL it was issued by; MOECOLLAB_TOKEN goes to whichever
    platform the command talks to.
    """
    stored = load_login()
    raw = url or os.environ.get(URL_ENV) or (stored.url if stored else None)
    if not raw:
        raise CliError("no platform given: pass --url URL, set MOECOLLAB_URL, or run "
                       "`moecollab login --url URL` first", code="not_logged_in")
    target = normalize_url(raw)
    same = stored if stored is not None and stored.url == target else None
    token = os.environ.get(TOKEN_ENV) or (same.token if same else None)
    if need_token and not token:
        raise CliError(f"not logged in to {target}: run `moecollab login --url {target}` "
                       "(or set MOECOLLAB_TOKEN)", code="not_logged_in")
    return Session(api=Api(target, token), username=same.username if same else None,
                   login=same)


def fetch_platform(api: Api) -> dict | None:
    """GET /api/v1/platform/ (backbone and size limits), None from a platform without it."""
    try:
        return api.get("platform/")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
