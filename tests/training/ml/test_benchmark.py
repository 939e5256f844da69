from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.core.management import call_command

from training.ml.benchmark import BenchmarkConfig, run_benchmark
from training.ml.benchmark_report import markdown_table

REPO = Path(__file__).resolve().parents[3]
SCORES = {"accuracy", "macro_f1"}
ROUTING = {"accuracy", "entropy", "normalized_entropy", "utilization", "dead_experts", "load"}


def shared_data() -> Path:
    path = Path(os.environ.get("MOECOLLAB_DATA_DIR") or REPO.parent / "shared" / "data")
    assert (path / "news" / "domain.json").is_file(), f"data sets not found at {path}"
    return path


@pytest.fixture
def tiny_data(tmp_path) -> tuple[Path, Path]:
    """A slice of the shared data (first lines of each file) in tmp; dev lines double as test."""
    src = shared_data()
    data, evals = tmp_path / "data", tmp_path / "eval"
    for folder in sorted(p for p in src.iterdir() if (p / "domain.json").is_file()):
        (data / folder.name).mkdir(parents=True)
        (evals / folder.name).mkdir(parents=True)
        (data / folder.name / "domain.json").write_text((folder / "domain.json").read_text())
        for name, n in (("train.jsonl", 150), ("dev.jsonl", 24)):
            lines = (folder / name).read_text(encoding="utf-8").splitlines()[:n]
            (data / folder.name / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        dev = (folder / "dev.jsonl").read_text(encoding="utf-8").splitlines()[24:44]
        (evals / folder.name / "test.jsonl").write_text("\n".join(dev) + "\n", encoding="utf-8")
    return data, evals


def check_report(report: dict, domains: list[str]) -> None:
    assert set(report["domains"]) == set(domains)
    for row in report["domains"].values():
        assert isinstance(row["n_eval"], int) and row["n_eval"] > 0
        for model in ("oracle", "baseline", "moe"):
            assert set(row[model]) >= SCORES
            assert all(0.0 <= row[model][k] <= 1.0 for k in SCORES)
    for model in ("oracle", "baseline", "moe", "moe_dense"):
        assert set(report["summary"][model]) >= SCORES
    for key in ("routing", "routing_unregularized"):
        assert set(report[key]) >= ROUTING
        assert set(report[key]["load"]) == set(domains)
        assert sum(report[key]["load"].values()) == pytest.approx(1.0)
    c = report["compute"]
    assert c["dense_flops_per_input"] >= c["routed_flops_per_input"] > 0
    assert c["reduction"] == pytest.approx(
        1 - c["routed_flops_per_input"] / c["dense_flops_per_input"]
    )
    assert set(report["timings_s"]) >= {
        "features", "train_experts", "train_baseline", "train_router", "evaluate", "total"
    }


def test_it_writes_a_complete_report_from_the_command(tiny_data, tmp_path):
    data, evals = tiny_data
    out = tmp_path / "report.json"
    call_command(
        "moe_benchmark", "--data-dir", str(data), "--eval-dir", str(evals), "--out", str(out),
        "--max-train-per-domain", "100", "--expert-epochs", "2", "--device", "cpu",
        "--cache-dir", str(tmp_path / "cache"), stdout=open(os.devnull, "w"),
    )
    report = json.loads(out.read_text())
    domains = sorted(p.name for p in data.iterdir())
    check_report(report, domains)
    assert report["eval_split"] == "test"
    assert all(row["n_eval"] == 20 for row in report["domains"].values())
    assert "| **summary** |" in markdown_table(report)


def test_it_scores_on_dev_when_no_test_files_are_given(tiny_data, tmp_path):
    data, _ = tiny_data
    cfg = BenchmarkConfig(
        data_dir=str(data), max_train_per_domain=32, expert_epochs=1, device="cpu",
        cache_dir=str(tmp_path / "cache"), expert_kind="branch", flops_per_domain=2,
    )
    report = run_benchmark(cfg)
    check_report(report, sorted(p.name for p in data.iterdir()))
    assert report["eval_split"] == "dev"
    assert report["compute"]["reduction"] > 0.2  # branch experts above the split are skipped
