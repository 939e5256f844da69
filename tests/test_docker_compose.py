"""docker-compose.yml names only things that exist in the project (no engine runs here)."""
from __future__ import annotations

import importlib.util
import re
import shlex

import pytest
import yaml
from django.core.management import get_commands
from django.urls import resolve

from moecollab_site.celery import app as celery_app
from tests.helpers import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ["web", "worker-cpu", "worker-gpu", "beat"]


def service_command(name: str) -> list[str]:
    command = SERVICES[name]["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def test_it_has_every_production_service():
    for name in ["postgres", "redis", *APP_SERVICES]:
        assert name in SERVICES, name


def test_it_reuses_one_anchored_definition_for_web_workers_and_beat():
    raw = (REPO / "docker-compose.yml").read_text()
    assert re.search(r"^x-app: &app$", raw, re.M)
    for name in APP_SERVICES:
        block = re.search(rf"^  {name}:\n((?:    .*\n|\n)+)", raw, re.M).group(1)
        assert "<<: *app" in block, name
        assert SERVICES[name]["build"] == "."
        assert SERVICES[name]["env_file"] == ".env"


def test_it_keeps_database_and_media_in_named_volumes():
    assert "pgdata" in COMPOSE["volumes"] and "media" in COMPOSE["volumes"]
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    assert any(v.startswith("media:") for v in SERVICES["web"]["volumes"])


def test_it_reserves_an_nvidia_gpu_for_the_gpu_worker_only():
    devices = SERVICES["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "deploy" not in SERVICES["worker-cpu"]


@pytest.mark.parametrize("name", [n for n in SERVICES if "build" in SERVICES[n]])
def test_it_names_only_commands_that_exist(name):
    argv = service_command(name)
    program = argv[0]
    if program == "python":
        assert argv[1] == "manage.py"
        assert argv[2] in get_commands(), f"{name}: no management command {argv[2]!r}"
    elif program == "gunicorn":
        assert importlib.util.find_spec("gunicorn") is not None
        assert importlib.util.find_spec(argv[1]) is not None, argv[1]
    elif program == "celery":
        assert argv[1:3] == ["-A", "moecollab_site"]
        sub = argv[3]
        assert sub in {"worker", "beat"}
        if sub == "worker":
            queues = argv[argv.index("-Q") + 1].split(",")
            known = {q.name for q in celery_app.conf.task_queues}
            assert set(queues) <= known, f"{name}: unknown queue in {queues}"
        else:
            celery_app.loader.import_default_modules()
            for entry in celery_app.conf.beat_schedule.values():
                assert entry["task"] in celery_app.tasks, entry["task"]
    else:
        pytest.fail(f"{name}: unexpected program {program!r}")


def test_it_points_the_web_healthcheck_at_a_real_url():
    check = " ".join(SERVICES["web"]["healthcheck"]["test"])
    path = re.search(r"localhost:8000(/\S*?)'", check).group(1)
    assert resolve(path).url_name == "healthz"


def test_it_ships_an_example_env_file_with_the_required_settings():
    names = {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text().splitlines()
             if line and not line.startswith("#")}
    assert {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT",
            "POSTGRES_PASSWORD", "MOECOLLAB_DATA_DIR"} <= names


def test_it_builds_the_image_from_the_pinned_requirements():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert "collectstatic" in dockerfile
