from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from training.ml.benchmark import BenchmarkConfig, load_domain_views, run_benchmark
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
    assert report["encoding"]["backend"] in ("torch-float32", "onnx-float32")


def test_it_writes_a_complete_report_from_the_command(tiny_data, tmp_path):
    data, evals = tiny_data
    out = tmp_path / "report.json"
    call_command(
        "moe_benchmark", "--data-dir", str(data), "--eval-dir", str(evals), "--out", str(out),
        "--max-train-per-domain", "100", "--expert-epochs", "2", "--device", "cpu",
        "--cache-dir", str(tmp_path / "cache"), "--save-dir", str(tmp_path / "saved"),
        stdout=open(os.devnull, "w"),
    )
    report = json.loads(out.read_text())
    domains = sorted(p.name for p in data.iterdir())
    check_report(report, domains)
    assert report["eval_split"] == "test"
    assert all(row["n_eval"] == 20 for row in report["domains"].values())
    assert "| **summary** |" in markdown_table(report)
    # a cold cache: every text encoded, on the workers' default backend, against the plain forward
    enc = report["encoding"]
    assert enc["texts"] == report["environment"]["texts_encoded"] > 0
    assert enc["texts_per_s"] > 0 and enc["reference_texts_per_s"] > 0
    assert enc["ratio"] == pytest.approx(enc["texts_per_s"] / enc["reference_texts_per_s"])
    assert "encode_reference" in report["timings_s"]
    _check_predict_benchmark(tmp_path / "saved" / "gating.safetensors", evals / "news", tmp_path)


def _check_predict_benchmark(bundle: Path, folder: Path, tmp_path: Path) -> None:
    """predict_benchmark on the benchmark's own bundle writes the issue's JSON shape."""
    out = tmp_path / "predict.json"
    call_command("predict_benchmark", "--texts", str(folder / "test.jsonl"), "--labels",
                 "--batch", "8", "--chunk", "4", "--limit", "16", "--bundle", str(bundle),
                 "--backends", "torch-float32", "onnx-float32", "--json", str(out),
                 stdout=open(os.devnull, "w"))
    result = json.loads(out.read_text())
    assert set(result) >= {"cpu", "batch", "chunk", "n_texts", "reference", "backends",
                           "serving_backend"}
    assert (result["batch"], result["chunk"], result["n_texts"]) == (8, 4, 16)
    assert set(result["cpu"]) == {"model", "flags"}
    assert set(result["reference"]) >= {"texts_per_s", "p50_ms", "p95_ms", "accuracy"}
    assert set(result["backends"]) == {"torch-float32", "onnx-float32"}
    for row in result["backends"].values():
        assert row["ratio"] == pytest.approx(
            row["texts_per_s"] / result["reference"]["texts_per_s"])
        assert 0.0 <= row["agreement"] <= 1.0 and 0.0 <= row["accuracy"] <= 1.0
        assert row["p50_ms"] <= row["p95_ms"]
    assert result["serving_backend"] in {"torch-float32", "onnx-float32"}


def test_it_scores_on_dev_when_no_test_files_are_given(tiny_data, tmp_path):
    data, _ = tiny_data
    cfg = BenchmarkConfig(
        data_dir=str(data), max_train_per_domain=32, expert_epochs=1, device="cpu",
        cache_dir=str(tmp_path / "cache"), expert_kind="branch", flops_per_domain=2,
        router_mlp_hidden=16, router_max_per_domain=120,
    )
    report = run_benchmark(cfg)
    # the router reads more of each train split than the experts were trained on
    assert report["router_train"]["n_train"] == 4 * 120
    check_report(report, sorted(p.name for p in data.iterdir()))
    assert report["eval_split"] == "dev"
    assert report["gating_train_config"]["mlp_hidden"] == 16  # the MLP router was trained
    assert report["compute"]["reduction"] > 0.2  # branch experts above the split are skipped


def test_a_router_fraction_outside_0_1_is_refused_with_its_name(tiny_data, tmp_path):
    data, _ = tiny_data
    with pytest.raises(CommandError, match=r"--router-fraction must be in \[0, 1\), got 1.5"):
        call_command("moe_benchmark", "--scenario", "marketplace", "--data-dir", str(data),
                     "--out", str(tmp_path / "r.json"), "--router-fraction", "1.5")
    assert not (tmp_path / "r.json").exists()


def test_router_rows_beyond_the_experts_cap_are_a_superset_of_the_experts_rows(tiny_data):
    data, _ = tiny_data
    cfg = BenchmarkConfig(data_dir=str(data), max_train_per_domain=40, router_max_per_domain=100)
    experts, routed = load_domain_views(cfg)
    for e, r in zip(experts, routed, strict=True):
        assert len(e.train) == 40 and len(r.train) == 100
        assert set(e.train) <= set(r.train) and r.dev == e.dev, e.name
    # the experts' rows are what the experts' cap alone samples (as before the router cap)
    assert load_domain_views(replace(cfg, router_max_per_domain=None))[0] == experts
    for smaller in (30, None):  # a smaller cap is train_gating's to apply
        e, r = load_domain_views(replace(cfg, router_max_per_domain=smaller))
        assert r is e


def test_the_marketplace_scenario_adds_its_block_to_the_plain_report(tiny_data, tmp_path):
    data, evals = tiny_data
    out = tmp_path / "market.json"
    call_command(
        "moe_benchmark", "--scenario", "marketplace", "--contributors-per-domain", "2",
        "--router-fraction", "0.2", "--max-train-per-domain", "100",
        "--router-max-per-domain", "150",
        "--data-dir", str(data), "--eval-dir", str(evals), "--out", str(out),
        "--expert-epochs", "2", "--device", "cpu", "--cache-dir", str(tmp_path / "cache"),
        stdout=open(os.devnull, "w"),
    )
    report = json.loads(out.read_text())
    domains = sorted(p.name for p in data.iterdir())
    check_report(report, domains)  # today's keys, from the plain run on the same data
    market = report["marketplace"]
    experts = market["experts"]
    assert len(experts) == len(domains) * (2 + 2)  # K shards + a near-duplicate + a junk each
    for key, row in experts.items():
        assert set(row) >= {"domain", "contributor", "role", "duplicate_of", "n_train", "alone",
                            "load", "load_unregularized", "credit"}
        assert row["role"] in {"shard", "duplicate", "junk"}
        assert (row["duplicate_of"] is not None) == (row["role"] == "duplicate")
        assert set(row["alone"]) >= SCORES and set(row["credit"]) == {
            "shapley", "shapley_ci95", "leave_one_out"}
        lo, hi = row["credit"]["shapley_ci95"]
        assert lo <= row["credit"]["shapley"] <= hi, key
    for d in domains:  # the routers' rows are held out from every contributor's shard: a
        # fifth of the experts' 100 rows, and the 50 rows beyond the experts' cap
        shards = sum(r["n_train"] for r in experts.values()
                     if r["domain"] == d and r["role"] == "shard")
        assert market["config"]["n_router"][d] == 20 + 50 and shards == 80, d
    assert set(market["summary"]) == {"best_single", "pooled", "moe", "moe_unregularized",
                                      "moe_dense", "moe_within_domain"}
    assert set(market["domains"]) == set(market["summary"])
    assert set(market["domains"]["moe_dense"]) == set(domains)
    for row in market["summary"].values():
        assert set(row) == SCORES and all(0 <= v <= 1 for v in row.values())
    for key in ("routing", "routing_unregularized"):
        assert set(market[key]) >= ROUTING and set(market[key]["load"]) == set(experts)
    assert set(market["contributors"]) == {row["contributor"] for row in experts.values()}
    for name, model in (("moe_vs_best_single", "moe"), ("moe_vs_pooled", "moe"),
                        ("moe_within_domain_vs_pooled", "moe_within_domain"),
                        ("moe_within_domain_vs_moe", "moe_within_domain")):
        summary = market["comparisons"][name]["summary"]
        assert summary["paired"] and summary["candidate"] == market["summary"][model]["accuracy"]
        lo, hi = summary["interval"]
        assert lo <= summary["difference"] <= hi
    assert market["comparisons"]["moe_within_domain_vs_moe"]["summary"]["production"] == (
        market["summary"]["moe"]["accuracy"])
