"""Test helpers shared by many test files (fixtures live in conftest.py)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from experts.models import DataSplit, Domain, Expert, ExpertVersion

REPO = Path(__file__).resolve().parent.parent
NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
TOY_LABELS = ["neg", "pos"]
# The backbone a version built without an artifact claims (the pages show its first 12 digits).
FINGERPRINT = "ab" * 32


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

    def __init__(self, env: dict, log_path: Path, *, hostname: str | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.hostname = hostname or f"test-{os.getpid()}-{time.monotonic_ns()}@localhost"
        self.extra_args = extra_args  # e.g. ("--beat", "--schedule", path): the local setup

    def start(self, timeout: float = 120) -> None:
        from training.models import WorkerHeartbeat

        cmd = [sys.executable, "-m", "celery", "-A", "moecollab_site", "worker",
               "-Q", "cpu,gpu", "--concurrency", "1", "-l", "INFO", "--purge",
               "-n", self.hostname, *self.extra_args]
        started = WorkerHeartbeat.objects.filter(hostname=self.hostname).values_list(
            "incarnation", flat=True).first()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env,
                                     stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-3000:]}")
            # A restart under the same name is up once its own incarnation is in the row.
            now = WorkerHeartbeat.objects.filter(hostname=self.hostname).values_list(
                "incarnation", flat=True).first()
            if now is not None and now != started:
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


def finished_job(job_id: int):
    """The job once it has ended, else None (a wait_for predicate)."""
    from training.models import Job

    job = Job.objects.get(pk=job_id)
    return job if job.is_finished else None


def wait_for(predicate, *, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# Rows ---------------------------------------------------------------------------------------
# One set of builders for domains, experts and versions, written straight to the database (no
# service, no job): for tests that need the rows, not the path that creates them.


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def make_domain(name: str = "toy", *, labels: list[str] | None = None, created_by=None,
                splits: dict[str, list[dict]] | None = None) -> Domain:
    """A domain; `splits` maps a split kind to its {"text", "label"} rows (test private)."""
    domain = Domain.objects.create(name=name, description=f"{name} texts",
                                   labels=list(labels or TOY_LABELS), created_by=created_by)
    for kind, rows in (splits or {}).items():
        payload = jsonl(rows)
        split = DataSplit(domain=domain, kind=kind, is_private=kind == DataSplit.Kind.TEST,
                          n_rows=len(rows), sha256=hashlib.sha256(payload).hexdigest())
        split.file.save(f"{name}-{kind}.jsonl", ContentFile(payload), save=False)
        split.save()
    return domain


def make_expert(owner: User, domain: Domain, name: str | None = None, **fields) -> Expert:
    return Expert.objects.create(owner=owner, domain=domain, name=name or f"{domain.name}-x",
                                 **fields)


def make_version(expert: Expert, *, status: str = ExpertVersion.Status.APPROVED,
                 number: int | None = None, accuracy: float | None = None,
                 macro_f1: float | None = None, fingerprint: str = FINGERPRINT,
                 split_layer: int = 6, artifact: Path | None = None,
                 with_files: bool = False) -> ExpertVersion:
    """A version row in any status, as if validation had run (no job, no worker).

    artifact: a folder with manifest.json and weights.safetensors (make_artifact, a trained
    expert) whose files and manifest the version gets; with_files: placeholder files instead.
    """
    number = number or (expert.versions.count() + 1)
    metrics = {}
    if accuracy is not None:
        metrics = {"test_accuracy": accuracy, "test_macro_f1": macro_f1 or accuracy,
                   "n_eval": 40, "eval_split": "test"}
    manifest = {"backbone": {"name": "tiny-backbone", "fingerprint": fingerprint},
                "domain": expert.domain.name, "split_layer": split_layer}
    manifest_bytes, weights_bytes = b'{"kind": "head"}', b"WEIGHTS-" + str(number).encode()
    sha = f"{expert.pk:04d}{number:04d}".ljust(64, "0")
    if artifact is not None:
        manifest_bytes = (artifact / "manifest.json").read_bytes()
        weights_bytes = (artifact / "weights.safetensors").read_bytes()
        manifest = json.loads(manifest_bytes)
        fingerprint = manifest["backbone"]["fingerprint"]
        sha = hashlib.sha256(weights_bytes).hexdigest()
    files = {}
    if artifact is not None or with_files:
        folder = f"experts/{expert.pk}/v{number}"
        files = {"manifest_file": default_storage.save(f"{folder}/manifest.json",
                                                       ContentFile(manifest_bytes)),
                 "weights": default_storage.save(f"{folder}/weights.safetensors",
                                                 ContentFile(weights_bytes))}
    return ExpertVersion.objects.create(
        expert=expert, number=number, status=status, kind=manifest.get("kind", "head"),
        metrics=metrics, n_parameters=3330, size_bytes=13320, backbone_fingerprint=fingerprint,
        manifest=manifest, weights_sha256=sha, training_params={"validation_job": None},
        checks=[{"name": "manifest schema", "ok": True, "message": "ok", "where": "upload"}],
        **files)


# Artifacts ----------------------------------------------------------------------------------


def make_artifact(folder: Path, *, domain: str = "news", labels: list[str] | None = None,
                  seed: int = 0, mlp_hidden: int = 16, kind: str = "head",
                  split_layer: int | None = None, backbone: dict | None = None,
                  layer_config: dict | None = None, tweak=None) -> tuple[Path, Path]:
    """A real expert artifact on the platform's backbone, random weights, written to disk.

    backbone / layer_config: fields the manifest claims instead of the platform's (a branch's
    layers are built from them, so the weights match the claim); tweak(expert) sets weights.
    """
    import types

    import torch

    from experts.ml.artifact import save_expert
    from experts.ml.modules import ExpertConfig, build_expert
    from experts.uploads import platform_backbone

    info = {**platform_backbone(), **(backbone or {})}
    labels = labels or ["World", "Sports", "Business", "Sci/Tech"]
    split = info["num_layers"] - (kind == "branch") if split_layer is None else split_layer
    torch.manual_seed(seed)
    expert = build_expert(ExpertConfig(
        kind=kind, domain=domain, labels=labels, hidden_size=info["hidden_size"],
        split_layer=split, mlp_hidden=mlp_hidden,
        n_branch_layers=info["num_layers"] - split if kind == "branch" else 0,
        layer_config={**info["layer_config"], "hidden_size": info["hidden_size"],
                      **(layer_config or {})} if kind == "branch" else None))
    if tweak is not None:
        with torch.no_grad():
            tweak(expert)
    save_expert(expert, folder, backbone=types.SimpleNamespace(**info),
                training={"note": "random weights made by a test", "seed": seed},
                metrics={"dev_accuracy": 0.25})
    return folder / "manifest.json", folder / "weights.safetensors"


def artifact_bytes(**kwargs) -> tuple[bytes, bytes]:
    """(manifest.json, weights.safetensors) of make_artifact(**kwargs), kept nowhere on disk."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest, weights = make_artifact(Path(tmp), **kwargs)
        return manifest.read_bytes(), weights.read_bytes()


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
    from experts.ml.data import load_domain_dir
    from experts.ml.features import FeatureCache
    from training.ml.expert_train import ExpertTrainConfig, train_expert

    backbone = load_backbone(BackboneConfig(device="cpu"))
    cache = FeatureCache(cache_dir, backbone)
    domain = load_domain_dir(domain_dir)
    trained = train_expert(ExpertTrainConfig(kind="head", epochs=15, device="cpu", seed=0),
                           backbone=backbone, cache=cache, domain=domain)
    save_expert(trained.expert, out, backbone=backbone, training=trained.training,
                metrics=trained.metrics)
    return out
