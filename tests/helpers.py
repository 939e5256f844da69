"""Test helpers shared by many test files (fixtures live in conftest.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The shared data sets: MOECOLLAB_DATA_DIR, else ../shared/data beside the checkout."""
    return Path(os.environ.get("MOECOLLAB_DATA_DIR") or REPO.parent / "shared" / "data")

def api_client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def database_url_of(settings_dict: dict) -> str:
    """A DATABASE_URL that points another process at the database the tests are using."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


class WorkerProcess:
    """A `celery worker` child process on the test database and the configured broker."""

    def __init__(self, env: dict, log_path: Path):
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.hostname = f"test-{os.getpid()}-{time.monotonic_ns()}@localhost"

    def start(self, timeout: float = 120) -> None:
        from training.models import WorkerHeartbeat

        cmd = [sys.executable, "-m", "celery", "-A", "moecollab_site", "worker",
               "-Q", "cpu,gpu", "--concurrency", "1", "-l", "INFO", "--purge",
               "-n", self.hostname]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env,
                                     stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-3000:]}")
            if WorkerHeartbeat.objects.filter(hostname=self.hostname).exists():
                return
            time.sleep(0.5)
        raise RuntimeError(f"worker never sent a heartbeat:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group, as an out-of-memory kill or a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Warm shutdown; an idle worker exits in seconds, a stuck one is killed after 10 s."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(predicate, *, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def make_artifact(folder: Path, *, domain: str = "news", labels: list[str] | None = None,
                  seed: int = 0, mlp_hidden: int = 16) -> tuple[Path, Path]:
    """A real head-expert artifact on the platform's backbone, random weights, written to disk."""
    import types

    import torch

    from experts.ml.artifact import save_expert
    from experts.ml.modules import ExpertConfig, build_expert
    from experts.uploads import platform_backbone

    info = platform_backbone()
    labels = labels or ["World", "Sports", "Business", "Sci/Tech"]
    torch.manual_seed(seed)
    expert = build_expert(ExpertConfig(kind="head", domain=domain, labels=labels,
                                       hidden_size=info["hidden_size"],
                                       split_layer=info["num_layers"], mlp_hidden=mlp_hidden))
    save_expert(expert, folder, backbone=types.SimpleNamespace(**info),
                training={"note": "random weights made by a test", "seed": seed},
                metrics={"dev_accuracy": 0.25})
    return folder / "manifest.json", folder / "weights.safetensors"


def media_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def write_domain_slice(src: Path, dest: Path, *, n_train: int, n_dev: int,
                       n_test: int) -> Path:
    """A small domain folder from a shared data set: train/dev from its train split, test from
    its dev split (so the test rows are never trained on)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "domain.json").write_bytes((src / "domain.json").read_bytes())
    train_lines = (src / "train.jsonl").read_text(encoding="utf-8").splitlines()
    test_lines = (src / "dev.jsonl").read_text(encoding="utf-8").splitlines()
    (dest / "train.jsonl").write_text("\n".join(train_lines[:n_train]) + "\n", encoding="utf-8")
    (dest / "dev.jsonl").write_text(
        "\n".join(train_lines[n_train:n_train + n_dev]) + "\n", encoding="utf-8")
    (dest / "test.jsonl").write_text("\n".join(test_lines[:n_test]) + "\n", encoding="utf-8")
    return dest


def train_real_artifact(domain_dir: Path, out: Path, *, cache_dir: Path) -> Path:
    """Train a head expert with the engine on a domain folder and export its artifact."""
    from experts.ml.artifact import save_expert
    from experts.ml.backbone import BackboneConfig, load_backbone
    from experts.ml.features import FeatureCache
    from training.ml.data import load_domain_dir
    from training.ml.expert_train import ExpertTrainConfig, train_expert

    backbone = load_backbone(BackboneConfig(device="cpu"))
    cache = FeatureCache(cache_dir, backbone)
    domain = load_domain_dir(domain_dir)
    trained = train_expert(ExpertTrainConfig(kind="head", epochs=15, device="cpu", seed=0),
                           backbone=backbone, cache=cache, domain=domain)
    save_expert(trained.expert, out, backbone=backbone, training=trained.training,
                metrics=trained.metrics)
    return out
