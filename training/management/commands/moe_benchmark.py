"""`manage.py moe_benchmark`: experts vs baseline vs routed mixture (needs no database)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from training.ml.benchmark import BenchmarkConfig, run_benchmark
from training.ml.benchmark_report import markdown_table
from training.ml.marketplace import (
    ROUTER_FRACTION,
    MarketplaceConfig,
    check_router_fraction,
    run_marketplace,
)


class Command(BaseCommand):
    help = "Train per-domain experts, a monolithic baseline and a router; write a JSON report."
    requires_system_checks: list = []  # pure ML: needs no database and no configured site

    def add_arguments(self, parser) -> None:
        parser.add_argument("--data-dir", required=True, help="folder of domain folders")
        parser.add_argument("--eval-dir", help="folder with <domain>/test.jsonl (default: dev)")
        parser.add_argument("--out", required=True, help="where to write report.json")
        parser.add_argument("--expert-kind", choices=["head", "branch", "lora"], default="head")
        parser.add_argument("--top-k", type=int, default=1)
        parser.add_argument("--max-train-per-domain", type=int)
        parser.add_argument(
            "--router-max-per-domain", type=int,
            help="router training rows per domain, sampled from the whole train split (may "
            "exceed --max-train-per-domain, as on the platform, where the router reads the "
            "domain's dataset; default: the experts' rows)")
        parser.add_argument("--split-layer", type=int)
        parser.add_argument("--expert-epochs", type=int)
        parser.add_argument(
            "--router-layers", type=int, nargs="+",
            help="backbone layers whose pooled states the router reads (default: the experts' "
            "split layer and 0, the embedding layer, as the platform's gating training)",
        )
        parser.add_argument("--router-mlp-hidden", type=int, default=0,
                            help="hidden width of an MLP router (default 0: linear)")
        parser.add_argument("--router-surface-buckets", type=int, default=None,
                            help="hash buckets of the texts' surface features (character "
                                 "n-grams, words) the router also reads; 0 = trunk features "
                                 "only (default: the platform's, 262144)")
        parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--cache-dir", default="var/feature-cache")
        parser.add_argument(
            "--encode-backend", choices=["auto", "torch-float32", "onnx-float32"],
            default="auto", help="backbone forward for the features (default auto: ONNX Runtime "
            "float32 on CPU, as the platform's workers)")
        parser.add_argument(
            "--scenario", choices=["default", "marketplace"], default="default",
            help="marketplace: K contributors per domain (Dirichlet label-skewed shards), a "
            "near-duplicate and a junk expert per domain, with Shapley credit")
        parser.add_argument("--contributors-per-domain", type=int, default=3)
        parser.add_argument(
            "--router-fraction", type=float, default=ROUTER_FRACTION,
            help="marketplace: share of each domain's train rows kept from every contributor "
            f"for the routers (default {ROUTER_FRACTION}; 0 = routers train on the "
            "contributors' own rows)")
        parser.add_argument("--save-dir", help="keep the trained experts (artifacts that upload "
                            "as they are) and the gating bundle in this folder")

    def handle(self, *args, **opts) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        if not Path(opts["data_dir"]).is_dir():
            raise CommandError(f"--data-dir {opts['data_dir']} is not a folder")
        try:
            check_router_fraction(opts["router_fraction"], name="--router-fraction")
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        cfg = BenchmarkConfig(
            data_dir=opts["data_dir"], eval_dir=opts["eval_dir"],
            expert_kind=opts["expert_kind"], top_k=opts["top_k"],
            max_train_per_domain=opts["max_train_per_domain"],
            router_max_per_domain=opts["router_max_per_domain"],
            split_layer=opts["split_layer"], expert_epochs=opts["expert_epochs"],
            router_layers=tuple(opts["router_layers"]) if opts["router_layers"] else None,
            router_mlp_hidden=opts["router_mlp_hidden"],
            router_surface_buckets=opts["router_surface_buckets"],
            device=opts["device"], seed=opts["seed"], cache_dir=opts["cache_dir"],
            save_dir=opts["save_dir"], encode_backend=opts["encode_backend"],
        )
        out = Path(opts["out"])
        # The marketplace report adds its block to the plain report's keys (one expert per
        # domain, the baseline, the oracle), run first on the same data and feature cache.
        report = run_benchmark(cfg)
        if opts["scenario"] == "marketplace":
            report["marketplace"] = run_marketplace(MarketplaceConfig(
                bench=cfg, contributors_per_domain=opts["contributors_per_domain"],
                router_fraction=opts["router_fraction"]))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2), encoding="utf-8")
        self.stdout.write(markdown_table(report))
        if "marketplace" in report:
            self.stdout.write(json.dumps(report["marketplace"]["summary"], indent=2))
        self.stdout.write(f"\nreport written to {out}")
