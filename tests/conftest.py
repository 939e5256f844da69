"""Shared fixtures: users in each role, and a real Celery worker process."""
from __future__ import annotations

import os

import pytest
from django.contrib.auth.models import User

from experts.models import Domain, Expert
from moecollab_site.roles import CONTRIBUTOR, MAINTAINER, user_add_role
from tests.helpers import (
    NEWS_LABELS,
    WorkerProcess,
    artifact_bytes,
    data_dir,
    database_url_of,
    make_domain,
    make_expert,
)

# MOECOLLAB_TESTS=backends keeps only the tests that touch the database, the broker or a worker
# (CI's second pass, on the embedded SQLite + filesystem broker, after a full pass on
# PostgreSQL + Redis): what the backend changes. Anything else ran in the first pass.
_BACKEND_FIXTURES = {"db", "transactional_db", "django_db_setup", "live_server",
                     "celery_worker_process", "worker_env"}


def touches_backends(item) -> bool:
    """A test whose result can depend on the database or broker in use."""
    return (bool(_BACKEND_FIXTURES & set(getattr(item, "fixturenames", ())))
            or any(item.get_closest_marker(m) for m in ("django_db", "worker", "backends")))


def pytest_collection_modifyitems(config, items):
    scope = os.environ.get("MOECOLLAB_TESTS", "all")
    if scope not in ("all", "backends"):
        raise pytest.UsageError(f"MOECOLLAB_TESTS must be all or backends, got {scope!r}")
    if scope == "all":
        return
    kept = [item for item in items if touches_backends(item)]
    config.hook.pytest_deselected(items=[item for item in items if not touches_backends(item)])
    items[:] = kept


def pytest_sessionfinish(session, exitstatus):
    """Remove this run's private broker folder (see settings.test)."""
    import shutil

    from django.conf import settings

    broker_dir = getattr(settings, "BROKER_DIR", None)
    if broker_dir is not None and broker_dir.name.startswith("test-broker-"):
        shutil.rmtree(broker_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Each test writes uploads into its own folder, so leftovers can be counted."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def fresh_cache():
    """Throttle counters and other cached values never leak from one test into the next."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def fresh_serving():
    """Serving's in-process model cache starts and ends empty (a live server answers
    predictions in the test's process, so models of earlier tests must not answer)."""
    from gating import serving

    serving.reset()
    yield
    serving.reset()


@pytest.fixture
def shared_data():
    path = data_dir()
    assert (path / "news" / "domain.json").exists(), f"data sets not found at {path}"
    return path


def _user(username: str, role: str) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username,
                                    email=f"{username}@example.org")
    user_add_role(user=user, role=role)
    return user


@pytest.fixture
def owner(db) -> User:
    return _user("alice", CONTRIBUTOR)


@pytest.fixture
def stranger(db) -> User:
    return _user("mallory", CONTRIBUTOR)


@pytest.fixture
def maintainer(db) -> User:
    return _user("maya", MAINTAINER)


@pytest.fixture
def news(db) -> Domain:
    """The news domain (AG News' four topics), without data."""
    return make_domain("news", labels=NEWS_LABELS)


@pytest.fixture
def expert(owner, news) -> Expert:
    """alice's expert for news, with no versions yet."""
    return make_expert(owner, news, "news-mlp")


@pytest.fixture(scope="session")
def artifact() -> tuple[bytes, bytes]:
    """(manifest bytes, weights bytes) of a valid head expert for news on the platform backbone."""
    return artifact_bytes()


@pytest.fixture
def worker_env(transactional_db, tmp_path, settings) -> dict:
    from django.db import connection

    env = os.environ.copy()
    env.update({
        "DJANGO_SETTINGS_MODULE": "moecollab_site.settings.test",
        "DATABASE_URL": database_url_of(connection.settings_dict),
        "MOECOLLAB_BROKER_DIR": str(settings.BROKER_DIR),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "MOECOLLAB_FEATURE_CACHE_DIR": str(settings.MOECOLLAB_FEATURE_CACHE_DIR),
    })
    return env


@pytest.fixture
def celery_worker_process(worker_env, tmp_path):
    worker = WorkerProcess(worker_env, tmp_path / "worker.log")
    worker.start()
    yield worker
    worker.stop()



@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random BERT saved like a hub model: tests the real loading path, no download."""
    from tests.experts.ml.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_backbone(tiny_model_dir):
    from tests.experts.ml.tiny import load_tiny_backbone

    return load_tiny_backbone(tiny_model_dir)
