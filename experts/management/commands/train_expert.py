"""`manage.py train_expert`: train an expert on one domain folder and write its artifact."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from experts.ml.artifact import save_expert
from experts.ml.backbone import BackboneConfig, load_backbone
from experts.ml.data import DomainDataError, load_domain_dir
from experts.ml.features import FeatureCache
from experts.ml.inference import open_encoder
from experts.ml.lora import save_lora_artifact
from training.ml.expert_train import ExpertTrainConfig, train_expert


class Command(BaseCommand):
    help = ("Train a head, branch or LoRA expert on a domain folder (domain.json, train/dev.jsonl);"
            " a LoRA expert is written as the folder peft's save_pretrained writes, plus "
            "manifest.json")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--data", required=True, type=Path, help="domain folder")
        parser.add_argument("--kind", choices=["head", "branch", "lora"], default="head")
        parser.add_argument("--out", required=True, type=Path, help="artifact output folder")
        parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
        parser.add_argument("--epochs", type=int, default=None)
        parser.add_argument("--max-train", type=int, default=None, help="subsample train split")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--split-layer", type=int, default=None)
        parser.add_argument("--cache-dir", type=Path, default=None,
                            help="feature cache (default: settings.MOECOLLAB_FEATURE_CACHE_DIR)")
        parser.add_argument("--name", default=None, help="display name stored in the manifest")

    def handle(self, *args, **opts) -> None:
        if opts["verbosity"] >= 2:
            logging.basicConfig(level=logging.INFO)
        cache_dir = opts["cache_dir"] or settings.MOECOLLAB_FEATURE_CACHE_DIR
        if cache_dir is None:
            raise CommandError(
                "no feature cache: pass --cache-dir or set MOECOLLAB_FEATURE_CACHE_DIR"
            )
        try:
            domain = load_domain_dir(opts["data"], max_train=opts["max_train"], seed=opts["seed"])
        except DomainDataError as exc:
            raise CommandError(str(exc)) from None
        backbone = load_backbone(BackboneConfig(device=opts["device"]))
        encoder = open_encoder(backbone, settings.MOECOLLAB_ENCODE_BACKEND, cache_dir=cache_dir,
                               threads=torch.get_num_threads())
        cache = FeatureCache(Path(cache_dir), backbone, encoder=encoder)
        cfg = ExpertTrainConfig(
            kind=opts["kind"], epochs=opts["epochs"], seed=opts["seed"], device=opts["device"],
            split_layer=opts["split_layer"],
        )
        self.stdout.write(
            f"training {cfg.kind} expert on {domain.name}: {len(domain.train)} train, "
            f"{len(domain.dev)} dev examples, backbone {backbone.name}"
        )

        last = [0.0]

        def progress(current: int, total: int, message: str) -> None:
            # Throttled: step-level reports arrive several times per epoch.
            if current == total or time.monotonic() - last[0] >= 2.0:
                last[0] = time.monotonic()
                self.stdout.write(f"  [{current}/{total}] {message}")

        trained = train_expert(cfg, backbone=backbone, cache=cache, domain=domain,
                               on_progress=progress)
        extra = {"name": opts["name"]} if opts["name"] else None
        save = save_lora_artifact if cfg.kind == "lora" else save_expert
        out = save(trained.expert, opts["out"], backbone=backbone, training=trained.training,
                   metrics=trained.metrics, extra=extra)
        m = trained.metrics
        self.stdout.write(self.style.SUCCESS(
            f"dev accuracy {m['dev_accuracy']:.4f}, dev macro-F1 {m['dev_macro_f1']:.4f} "
            f"(best epoch {int(m['best_epoch'])}); artifact written to {out}"
        ))
