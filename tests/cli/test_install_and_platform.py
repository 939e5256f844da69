"""`moecollab` as a contributor gets it: `pip install` of the working tree into a fresh virtual
environment (no system site-packages: the base install resolves its own dependencies from the
package index), then login, inspect, push --wait, status, pull, predict and logout against a live
gunicorn server with a real Celery worker."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from experts.models import ExpertVersion
from tests.helpers import REPO, make_artifact

HEAVY = ("django", "celery", "kombu", "psycopg2", "torch", "transformers", "safetensors",
         "rest_framework", "gunicorn")
COMMANDS = ("login", "logout", "train", "inspect", "push", "status", "pull", "predict")


def _working_tree_copy(dest: Path) -> Path:
    """What a clone of the working tree holds: tracked files plus new ones git does not ignore
    (never .venv/, var/ or build leftovers)."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, names):
        src = REPO / os.fsdecode(name)
        if src.is_file():
            (dest / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / os.fsdecode(name))
    return dest


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with `pip install <working tree>` (pip's default cache keeps reruns fast)."""
    root = tmp_path_factory.mktemp("cli-venv")
    src = _working_tree_copy(root / "src")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    python = root / "venv" / "bin" / "python"
    result = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                             "--disable-pip-version-check", str(src)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return root / "venv"


def test_it_installs_the_cli_without_the_platform(venv):
    python = venv / "bin" / "python"
    code = ("import importlib.util, sys\n"
            "import moecollab_cli.cli, moecollab_cli.local, moecollab_cli.remote\n"
            "import experts.ml.upload_checks\n"
            f"heavy = {HEAVY!r}\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
            "installed = sorted(m for m in heavy if importlib.util.find_spec(m))\n"
            "print(loaded, installed)\n"
            "assert 'django' not in sys.modules and not loaded and not installed\n")
    result = subprocess.run([str(python), "-c", code], cwd=venv, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # The wheel holds the command line and the ML core, none of the apps' Django modules.
    for name in ("experts.api", "experts.models", "gating.views", "moecollab_site"):
        check = subprocess.run([str(python), "-c", f"import {name}"], cwd=venv,
                               capture_output=True, text=True, timeout=60)
        assert check.returncode != 0, f"{name} was installed"
    helps = subprocess.run([str(venv / "bin" / "moecollab"), "--help"], capture_output=True,
                           text=True, timeout=60)
    assert helps.returncode == 0 and all(c in helps.stdout for c in COMMANDS), helps.stdout
    for command in COMMANDS:
        result = subprocess.run([str(venv / "bin" / "moecollab"), command, "--help"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "--json" in result.stdout, (command, result.stdout)
    # Training needs the extra, and says so.
    train = subprocess.run([str(venv / "bin" / "moecollab"), "train", "--data", str(venv),
                            "--out", str(venv / "x")], capture_output=True, text=True, timeout=60)
    assert train.returncode == 1, train.stderr
    assert "training needs the train extra (torch is not installed)" in train.stderr
    assert "pip install 'moecollab[train]'" in train.stderr


def _status_with_token(url: str, token: str) -> int:
    request = urllib.request.Request(f"{url}/api/v1/notifications/",
                                     headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.worker
def test_it_logs_in_pushes_and_waits_pulls_predicts_and_logs_out(
        venv, cli_factory, live_api, celery_worker_process, owner, tmp_path):
    cli = cli_factory([str(venv / "bin" / "moecollab")])
    url = live_api.url
    manifest, weights = make_artifact(tmp_path / "artifact", domain="news", seed=11)
    artifact = manifest.parent

    # Nothing works before a log-in, and each refusal says what to do.
    refused = cli("push", str(artifact), "--domain", "news")
    assert refused.returncode == 1 and "moecollab login" in refused.stderr, refused
    wrong = cli("login", "--url", url, "--username", owner.username, "--password-stdin",
                stdin="not-the-password\n")
    assert wrong.returncode == 1 and "log-in to" in wrong.stderr and "refused" in wrong.stderr
    assert not cli.credentials.exists()

    login = cli("login", "--url", url, "--username", owner.username, "--password-stdin",
                stdin=f"pw-{owner.username}\n")
    assert login.returncode == 0, login
    assert stat.S_IMODE(cli.credentials.stat().st_mode) == 0o600
    stored = json.loads(cli.credentials.read_text())
    assert stored["url"] == url and stored["username"] == owner.username
    assert stored["platform"]["backbone"]["fingerprint"] == json.loads(
        manifest.read_text())["backbone"]["fingerprint"]
    token = stored["token"]
    assert token not in login.stdout + login.stderr

    inspected = cli("inspect", str(artifact))  # the base install: no torch, upload checks only
    assert inspected.returncode == 0, inspected
    assert "✓ backbone: matches platform backbone" in inspected.stdout
    assert "loads and runs: left to the platform's worker" in inspected.stdout

    pushed = cli("push", str(artifact), "--domain", "news", "--expert", "cli-news", "--wait",
                 "--timeout", "300")
    assert pushed.returncode == 0, f"{pushed}\n{live_api.server.log_tail()}"
    version = ExpertVersion.objects.get(expert__name="cli-news", expert__owner=owner)
    assert version.status == ExpertVersion.Status.AWAITING_REVIEW
    out = pushed.stdout
    print(out)  # what a contributor sees, in the test log
    assert f"created expert 'cli-news' (#{version.expert_id}) for domain news" in out
    assert "uploading to cli-news" in pushed.stderr  # the progress bar
    for check in version.checks:
        assert f"✓ {check['name']} [{check['where']}]: {check['message']}" in out
    n, split = version.metrics["n_eval"], version.metrics["eval_split"]
    assert (f"test_accuracy = {version.metrics['test_accuracy']:.4f} (n={n} {split} examples)"
            in out)

    again = cli("push", str(artifact), "--expert", "cli-news", "--json")  # same weights: 409
    assert again.returncode == 1 and again.json["error"]["code"] == "duplicate", again

    mine = cli("status", "--json")
    assert mine.returncode == 0, mine
    listed = {e["name"]: e for e in mine.json["experts"]}
    assert listed["cli-news"]["latest_version"]["status"] == "awaiting_review"
    detail = cli("status", "cli-news@1")
    assert detail.returncode == 0 and "version 1: awaiting_review" in detail.stdout, detail

    pulled = cli("pull", "cli-news@1", "--out", str(tmp_path / "pulled"), "--json")
    assert pulled.returncode == 0, pulled
    assert pulled.json["sha256"] == version.weights_sha256
    assert pulled.json["files"] == ["README.md", "manifest.json", "weights.safetensors"]
    assert (tmp_path / "pulled" / "weights.safetensors").read_bytes() == weights.read_bytes()
    assert json.loads((tmp_path / "pulled" / "manifest.json").read_text()) == json.loads(
        manifest.read_text())
    assert "moecollab inspect" in (tmp_path / "pulled" / "README.md").read_text()  # model card
    exists = cli("pull", "cli-news", "--out", str(tmp_path / "pulled"))
    assert exists.returncode == 1 and "pass --force" in exists.stderr, exists

    texts = ["Stocks tumbled after the central bank raised rates",
             "WINNER!! Claim your free prize now, text WIN to 80080"]
    predicted = cli("predict", *texts, "--json")
    assert predicted.returncode == 0, predicted
    predictions = predicted.json["predictions"]
    assert len(predictions) == 2 and predictions[1]["domain"] == "spam"
    human = cli("predict", texts[0])
    assert human.returncode == 0 and f"{texts[0]!r} -> " in human.stdout, human

    # A token instead of a password (CI): checked, then stored for that platform.
    elsewhere = {"MOECOLLAB_CONFIG_DIR": str(tmp_path / "ci-config")}
    bad = cli("login", "--url", url, env={**elsewhere, "MOECOLLAB_TOKEN": "0" * 40})
    assert bad.returncode == 1 and "is not valid on" in bad.stderr, bad
    ci = cli("login", "--url", url, "--json", env={**elsewhere, "MOECOLLAB_TOKEN": token})
    assert ci.returncode == 0 and ci.json["username"] is None, ci
    assert stat.S_IMODE((tmp_path / "ci-config" / "credentials.json").stat().st_mode) == 0o600

    assert _status_with_token(url, token) == 200
    logout = cli("logout")
    assert logout.returncode == 0, logout
    assert not cli.credentials.exists()
    assert _status_with_token(url, token) == 401  # revoked on the server, not only forgotten
    after = cli("status", "--url", url)
    assert after.returncode == 1 and "moecollab login" in after.stderr, after
