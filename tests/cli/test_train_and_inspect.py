"""`moecollab train` then `moecollab inspect` on a tiny slice of a shared data set.

The train extra in a fresh virtual environment would download torch (about a gigabyte), so these
run the command line from the project's own virtual environment, which has the extra's packages:
`python -m moecollab_cli ...`, exactly the code the `moecollab` script runs.
"""
from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from experts.uploads import UploadRejected, check_upload, platform_backbone
from tests.cli.conftest import Cli
from tests.helpers import REPO, data_dir, write_domain_slice


@pytest.fixture
def cli(cli_factory):
    return cli_factory([sys.executable, "-m", "moecollab_cli"], pythonpath=str(REPO))


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """One training run for the module (the tests below copy its artifact)."""
    root = tmp_path_factory.mktemp("cli-train")
    (root / "home").mkdir()
    cli = Cli([sys.executable, "-m", "moecollab_cli"], root / "home", cwd=root,
              pythonpath=str(REPO))
    data = write_domain_slice(data_dir() / "spam", root / "spam", n_train=80, n_dev=40,
                              n_test=5)
    out = root / "spam-head"
    run = cli("train", "--data", str(data), "--kind", "head", "--out", str(out), "--device",
              "cpu", "--epochs", "3", "--name", "tiny spam", "--cache-dir",
              str(root / "cache"), "--json")
    assert run.returncode == 0, run
    return run, out


@pytest.fixture
def trained(trained_once, tmp_path):
    run, out = trained_once
    return run, Path(shutil.copytree(out, tmp_path / "artifact"))


def test_it_trains_an_expert_with_a_progress_bar(trained_once):
    run, out = trained_once
    result = run.json
    assert result["out"] == str(out) and result["domain"] == "spam"
    assert result["metrics"]["n_train"] == 80 and result["metrics"]["n_dev"] == 40
    assert "training" in run.stderr and "epoch" in run.stderr  # the bar, on stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "tiny spam" and manifest["kind"] == "head"
    assert manifest["backbone"]["fingerprint"] == platform_backbone()["fingerprint"]


def test_it_inspects_what_it_trained(cli, trained):
    _, out = trained
    run = cli("inspect", str(out), "--json")
    assert run.returncode == 0, run
    checks = {c["name"]: c for c in run.json["checks"]}
    assert all(c["ok"] for c in checks.values()), checks
    assert "loads and runs" in checks  # torch is here, so the worker's check runs too
    assert run.json["backbone_compared_with"] is None  # not logged in: nothing to compare with
    upload_only = cli("inspect", str(out), "--no-load")
    assert upload_only.returncode == 0 and "artifact OK" in upload_only.stdout, upload_only
    assert "✓ finite values: no NaN or Inf" in upload_only.stdout


def _poison(weights: bytes, name: str) -> bytes:
    """The weights with the first float of tensor `name` set to NaN."""
    (n,) = struct.unpack("<Q", weights[:8])
    begin = json.loads(weights[8:8 + n])[name]["data_offsets"][0]
    at = 8 + n + begin
    return weights[:at] + struct.pack("<f", float("nan")) + weights[at + 4:]


@pytest.mark.parametrize("breakage", ["nan", "manifest", "oversized"])
def test_it_refuses_a_broken_artifact_with_the_platforms_message(cli, trained, breakage):
    _, out = trained
    manifest_path, weights_path = out / "manifest.json", out / "weights.safetensors"
    args: list[str] = []
    if breakage == "nan":
        weights_path.write_bytes(_poison(weights_path.read_bytes(), "head.fc1.bias"))
    elif breakage == "manifest":
        manifest = json.loads(manifest_path.read_text())
        manifest["kind"], manifest["surprise"] = "hydra", 1
        manifest_path.write_text(json.dumps(manifest))
    else:
        args = ["--max-mb", "0.01"]
    max_bytes = int(0.01 * 2**20) if args else 200 * 2**20
    uploads = [SimpleUploadedFile(p.name, p.read_bytes()) for p in (manifest_path, weights_path)]
    with pytest.raises(UploadRejected) as platform:  # what the web process answers
        check_upload(*uploads, max_bytes=max_bytes)
    run = cli("inspect", str(out), "--no-load", *args, "--json")
    assert run.returncode == 1, run
    failed = [c for c in run.json["checks"] if not c["ok"]]
    assert (failed[0]["name"], failed[0]["message"]) == (platform.value.check,
                                                          platform.value.message)
    assert run.json["ok"] is False
    human = cli("inspect", str(out), "--no-load", *args)
    assert f"✗ {platform.value.check}: {platform.value.message}" in human.stdout
    assert human.stderr.startswith("error: artifact rejected")


def test_it_passes_lora_to_the_engine_and_reports_its_answer(cli, shared_data, tmp_path):
    """No LoRA of its own: whatever the engine says about --kind lora is what the user sees."""
    data = write_domain_slice(shared_data / "spam", tmp_path / "spam", n_train=16, n_dev=8,
                              n_test=5)
    run = cli("train", "--data", str(data), "--kind", "lora", "--out", str(tmp_path / "lora"),
              "--device", "cpu", "--epochs", "1", "--cache-dir", str(tmp_path / "cache"))
    if run.returncode == 0:  # the engine trains LoRA experts: they are written as PEFT does
        assert (tmp_path / "lora" / "adapter_config.json").is_file(), run
        inspected = cli("inspect", str(tmp_path / "lora"), "--json")
        assert inspected.returncode == 0, inspected
        assert {c["name"] for c in inspected.json["checks"]} >= {"tensors match architecture",
                                                                  "loads and runs"}
    else:
        assert run.returncode == 1 and run.stderr.startswith("error: "), run
        assert "Traceback" not in run.stderr


def test_it_explains_what_is_wrong_with_the_command_line(cli, tmp_path):
    missing = cli("train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 1 and "error: " in missing.stderr, missing
    assert "Traceback" not in missing.stderr
    usage = cli("train", "--kind", "hydra", "--data", str(tmp_path), "--out", str(tmp_path))
    assert usage.returncode == 2 and "'hydra' is not one of" in usage.stderr, usage
    not_a_folder = cli("inspect", str(tmp_path / "nowhere"), "--json")
    assert not_a_folder.returncode == 1
    assert not_a_folder.json["error"]["message"].endswith(
        "is not a folder with manifest.json and weights.safetensors")
