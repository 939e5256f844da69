"""Settings for the test suite: whatever DATABASE_URL/CELERY_BROKER_URL say, else SQLite + files."""
from __future__ import annotations

import os

from moecollab_site.settings.base import *  # noqa: F403
from moecollab_site.settings.base import (
    CELERY_BROKER_URL,
    DATABASES,
    VAR_DIR,
    env,
    filesystem_broker_options,
)

SECRET_KEY = env.str("SECRET_KEY", default="test-key-0123456789-not-secret-0123456789-abcdef")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
# A file, not memory, so a worker process started by a test sees the same database.
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # One file per test run, so two runs on one machine do not share a database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
# Keep test state apart from a locally running platform.
if "MEDIA_ROOT" not in os.environ:
    MEDIA_ROOT = VAR_DIR / "test-media"
if "MOECOLLAB_BROKER_DIR" not in os.environ:
    # Per run, like the database: a worker of one run must not take another run's tasks.
    BROKER_DIR = VAR_DIR / f"test-broker-{os.getpid()}"
    if CELERY_BROKER_URL.startswith("filesystem://"):
        CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(BROKER_DIR)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Serve static files through WhiteNoise straight from the source folders, no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
