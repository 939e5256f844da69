"""Local development and the README's run command: SQLite, embedded broker, DEBUG on."""
from __future__ import annotations

from moecollab_site.settings.base import *  # noqa: F403
from moecollab_site.settings.base import env, env_bool

DEBUG = env_bool("DEBUG", True)
# A fixed key is fine for a local, single-user run; production refuses to start without one.
SECRET_KEY = env.str(
    "SECRET_KEY", default="local-development-key-not-for-production-use-0123456789"
)
