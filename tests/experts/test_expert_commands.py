from __future__ import annotations

import json
import os
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MOECOLLAB_DATA_DIR") or REPO.parent / "shared" / "data")


def _small_spam(folder: Path) -> Path:
    """A small slice of the spam domain (written to tmp, never into the repo)."""
    folder.mkdir()
    (folder / "domain.json").write_bytes((DATA / "spam" / "domain.json").read_bytes())
    for split in ("train", "dev"):
        lines = (DATA / "spam" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        (folder / f"{split}.jsonl").write_text("\n".join(lines[:100]) + "\n", encoding="utf-8")
    return folder


def test_it_trains_inspects_and_rejects_an_expert_from_the_command_line(tmp_path):
    out = StringIO()
    call_command("train_expert", data=str(_small_spam(tmp_path / "data")), kind="head",
                 out=str(tmp_path / "spam"), max_train=60, epochs=2,
                 cache_dir=str(tmp_path / "cache"), device="cpu", stdout=out)
    assert "dev accuracy" in out.getvalue()
    manifest = json.loads((tmp_path / "spam" / "manifest.json").read_text())
    assert manifest["domain"] == "spam" and manifest["training"]["n_train"] == 60

    report = StringIO()
    call_command("inspect_expert", str(tmp_path / "spam"), stdout=report)
    assert report.getvalue().count("✓") == 9 and "artifact OK" in report.getvalue()

    manifest["labels"] = ["ham", "ham"]
    (tmp_path / "spam" / "manifest.json").write_text(json.dumps(manifest))
    report = StringIO()
    with pytest.raises(CommandError, match="check"):
        call_command("inspect_expert", str(tmp_path / "spam"), "--no-backbone", stdout=report)
    assert "✗ manifest schema: manifest.labels must be a non-empty list" in report.getvalue()


def test_it_reports_bad_domain_data_as_a_command_error(tmp_path):
    (tmp_path / "domain.json").write_text('{"name": "x", "labels": ["a", "b"]}')
    (tmp_path / "train.jsonl").write_text('{"text": "hi", "label": "c"}\n')
    (tmp_path / "dev.jsonl").write_text('{"text": "hi", "label": "a"}\n')
    with pytest.raises(CommandError, match=r"train.jsonl: line 1: unknown label 'c'"):
        call_command("train_expert", data=str(tmp_path), out=str(tmp_path / "out"),
                     cache_dir=str(tmp_path / "cache"))
