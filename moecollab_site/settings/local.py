"""The README's run command (`make run`) and local development: SQLite, embedded broker.

DEBUG is off unless DEBUG=true is set: `make run` is what a user runs, and a user must see the
site's own error pages, never Django's debug page with settings and tracebacks in it.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from moecollab_site.settings.base import *  # noqa: F403
from moecollab_site.settings.base import STATIC_ROOT, VAR_DIR, env, env_bool

DEBUG = env_bool("DEBUG", False)


def local_secret_key(path: Path) -> str:
    """This installation's own key, made on first start and kept in var/ (mode 0600).

    A key fixed in the source would be the same for every clone, so anyone could forge session
    cookies of anyone else's local run. O_EXCL makes the web process and a worker starting at
    the same moment agree on one key.
    """
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key + "\n")
    return key


SECRET_KEY = env.str("SECRET_KEY", default="") or local_secret_key(VAR_DIR / "secret-key.txt")

# Static files come straight from the source folders through WhiteNoise, also with DEBUG off:
# no collectstatic step to forget, and no manifest that goes stale when a file changes.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
# WhiteNoise also serves STATIC_ROOT and warns when it does not exist; it stays empty here.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
