"""`moecollab login` and `moecollab logout`."""
from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

import click

from moecollab_cli.client import Api, ApiError
from moecollab_cli.config import (
    TOKEN_ENV,
    URL_ENV,
    Login,
    credentials_path,
    delete_login,
    load_login,
    save_login,
)
from moecollab_cli.output import CliError, Output, json_option
from moecollab_cli.session import fetch_platform, normalize_url

# DELETE here revokes the token the request is authenticated with (204; 401 from then on).
TOKEN_PATH = "auth/token/"


def _ask(what: str, *, default: str | None = None, hide: bool = False, flag: str) -> str:
    """Prompt like `docker login` does, but only on a terminal: a script gets an error."""
    if not sys.stdin.isatty():
        raise CliError(f"no {what.lower()} given and standard input is not a terminal to ask "
                       f"on: pass {flag}", code="usage")
    return click.prompt(what, default=default, hide_input=hide, err=True).strip()


def _loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option("--url", help=f"The platform, e.g. https://moecollab.example.org (default: "
                            f"{URL_ENV}, or asked).")
@click.option("--username", "-u", help="Your user name on the platform (asked if not given).")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (e.g. from a secret store).")
@json_option
def login(url: str | None, username: str | None, password_stdin: bool, ui: Output) -> None:
    """Log in to a platform and keep its API token for the other commands.

    Asks for whatever it is not given. With MOECOLLAB_TOKEN set, that token is checked and
    stored instead of asking for a password. The token file (in MOECOLLAB_CONFIG_DIR, or the
    user's config folder) is readable by you only (mode 0600).
    """
    stored = load_login()
    url = url or os.environ.get(URL_ENV) or _ask(
        "Platform URL", default=stored.url if stored else None, flag="--url URL")
    api = Api(normalize_url(url))
    env_token = os.environ.get(TOKEN_ENV)
    if env_token and password_stdin:
        raise CliError(f"give either {TOKEN_ENV} or --password-stdin, not both", code="usage")
    if env_token:
        api.token = env_token
        try:
            api.get("notifications/", page=1)  # needs a log-in: a wrong token is refused
        except ApiError as exc:
            if exc.status == 401:
                raise CliError(f"the token in {TOKEN_ENV} is not valid on {api.url}",
                               code="login_refused") from None
            raise
        how = f"the token in {TOKEN_ENV}"
    else:
        if password_stdin and not username:
            raise CliError("--password-stdin needs --username (standard input holds the "
                           "password)", code="usage")
        username = username or _ask("Username", flag="--username NAME")
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = _ask("Password", hide=True, flag="--password-stdin")
        if not password:
            raise CliError("the password is empty", code="usage")
        if not api.url.startswith("https://") and not _loopback(api.url):
            ui.say(f"warning: {api.url} is plain http; your password and token cross the "
                    "network unencrypted")
        try:
            answer = api.post(TOKEN_PATH, {"username": username, "password": password},
                              auth=False)
        except ApiError as exc:
            if exc.status == 400:
                raise CliError(f"log-in to {api.url} refused for {username!r}: "
                               f"{exc.message}", code="login_refused") from None
            raise
        api.token = answer["token"]
        how = f"user {username}"
    path = save_login(Login(url=api.url, token=api.token, username=username,
                            platform=fetch_platform(api)))
    ui.result({"url": api.url, "username": username, "credentials": str(path)},
               lambda: ui.say(f"Logged in to {api.url} as {how}; token stored in {path} "
                               "(mode 0600)."))


@click.command()
@json_option
def logout(ui: Output) -> None:
    """Revoke the stored token on the platform and delete it from this machine.

    If the platform cannot be reached the token is kept, so you can try again: a token left
    valid on the server is worse than one still on your disk.
    """
    stored = load_login()
    if stored is None:
        ui.result({"logged_out": False, "revoked": False},
                   lambda: ui.say(f"Not logged in (no {credentials_path()})."))
        return
    api = Api(stored.url, stored.token)
    try:
        api.delete(TOKEN_PATH)
    except ApiError as exc:
        if exc.status is None:
            raise CliError(f"{exc.message}; the token was not revoked and is still stored in "
                           f"{credentials_path()}: run `moecollab logout` again once "
                           f"{stored.url} answers", code="unreachable") from None
        if exc.status in (404, 405):
            delete_login()
            raise CliError(f"{stored.url} cannot revoke tokens (DELETE /api/v1/{TOKEN_PATH} "
                           f"answered {exc.status}); the token was removed from this machine "
                           "but stays valid until it is revoked on the site",
                           code="not_revoked") from None
        if exc.status != 401:  # 401: already revoked, nothing left to do on the server
            raise
    delete_login()
    ui.result({"logged_out": True, "revoked": True, "url": stored.url},
               lambda: ui.say(f"Logged out of {stored.url}: the token is revoked and "
                               f"{credentials_path()} is deleted."))
