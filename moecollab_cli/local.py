"""`moecollab train` and `moecollab inspect`: the ML core, run on this machine."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import click

from experts.ml.upload_checks import (
    DEFAULT_MAX_BYTES,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    MiB,
    artifact_paths,
    inspect_upload,
)
from moecollab_cli.config import load_login
from moecollab_cli.output import CliError, Output, check_line, json_option

TRAIN_EXTRA = "pip install 'moecollab[train]'"
LORA_CONFIG_NAME = "adapter_config.json"  # what PEFT's save_pretrained writes


def require_artifact(folder: Path) -> tuple[Path, Path]:
    """(manifest, weights) of an artifact folder (a LoRA expert's weights keep PEFT's name,
    adapter_model.safetensors); what is not one is refused by name."""
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder with {MANIFEST_NAME} and {WEIGHTS_NAME}",
                       code="usage")
    if (folder / LORA_CONFIG_NAME).is_file() and not (folder / MANIFEST_NAME).exists():
        raise CliError(f"{folder} is a PEFT adapter folder without {MANIFEST_NAME} (the domain "
                       "and label order PEFT does not record): upload it on the site, or train "
                       "it with `moecollab train --kind lora`", code="unsupported")
    return artifact_paths(folder)


def _has_torch() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


def default_cache_dir() -> Path:
    """Backbone features cached across runs: $XDG_CACHE_HOME/moecollab/features."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "moecollab" / "features"


@click.command()
@click.option("--data", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Domain folder: domain.json, train.jsonl, dev.jsonl.")
@click.option("--kind", type=click.Choice(["head", "branch", "lora"]), default="head",
              show_default=True, help="Expert kind.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write manifest.json and weights.safetensors to.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--epochs", type=click.IntRange(min=1), help="Upper bound on epochs.")
@click.option("--max-train", type=click.IntRange(min=1),
              help="Train on a stratified, seeded subsample of this many rows.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--split-layer", type=click.IntRange(min=0), help="Trunk depth the expert taps.")
@click.option("--name", help="Display name stored in the manifest.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              envvar="MOECOLLAB_FEATURE_CACHE_DIR",
              help="Feature cache (default: MOECOLLAB_FEATURE_CACHE_DIR, else "
                   "~/.cache/moecollab/features).")
@json_option
def train(data: Path, kind: str, out: Path, device: str, epochs: int | None,
          max_train: int | None, seed: int, split_layer: int | None, name: str | None,
          cache_dir: Path | None, ui: Output) -> None:
    """Train an expert on a domain folder and write its artifact (needs the train extra)."""
    try:
        from experts.ml.artifact import save_expert
        from experts.ml.backbone import BackboneConfig, load_backbone
        from experts.ml.data import DomainDataError, load_domain_dir
        from experts.ml.features import FeatureCache
        from training.ml.expert_train import ExpertTrainConfig, train_expert
    except ImportError as exc:
        raise CliError(f"training needs the train extra ({exc.name} is not installed): "
                       f"{TRAIN_EXTRA}", code="missing_extra") from None
    try:
        domain = load_domain_dir(data, max_train=max_train, seed=seed)
    except DomainDataError as exc:
        raise CliError(str(exc), code="invalid_data") from None
    try:
        backbone = load_backbone(BackboneConfig(device=device))
    except RuntimeError as exc:  # e.g. cuda asked for, none available
        raise CliError(str(exc), code="device") from None
    cfg = ExpertTrainConfig(kind=kind, epochs=epochs, seed=seed, device=device,
                            split_layer=split_layer)
    ui.say(f"training a {kind} expert on {domain.name}: {len(domain.train)} train, "
           f"{len(domain.dev)} dev examples, backbone {backbone.name}")
    cache = FeatureCache(cache_dir or default_cache_dir(), backbone)
    with ui.bar(None, "training") as bar:
        def progress(done: float, total: float, message: str) -> None:
            if bar.total != total:
                bar.reset(total=total)
            bar.n = done
            bar.set_postfix_str(message, refresh=False)
            bar.refresh()

        try:
            trained = train_expert(cfg, backbone=backbone, cache=cache, domain=domain,
                                   on_progress=progress)
        except ValueError as exc:  # the engine's refusal of this config or these data
            raise CliError(str(exc), code="invalid_config") from None
    if kind == "lora":  # the folder PEFT's save_pretrained writes, plus manifest.json
        from experts.ml.lora import save_lora_artifact as save
    else:
        save = save_expert
    folder = save(trained.expert, out, backbone=backbone, training=trained.training,
                  metrics=trained.metrics, extra={"name": name} if name else None)
    m = trained.metrics
    result = {"out": str(folder), "kind": kind, "domain": domain.name, "metrics": m,
              "backbone": {"name": backbone.name, "fingerprint": backbone.fingerprint}}
    ui.result(result, lambda: ui.say(
        f"dev accuracy {m['dev_accuracy']:.4f}, macro-F1 {m['dev_macro_f1']:.4f} "
        f"(n={int(m['n_dev'])} dev examples, best epoch {int(m['best_epoch'])}); artifact "
        f"written to {folder}\nnext: moecollab inspect {folder}  then  moecollab push {folder} "
        f"--domain {domain.name} --wait"))


def _summary(manifest_path: Path) -> dict | None:
    try:
        m = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict):
        return None
    bb = m.get("backbone") if isinstance(m.get("backbone"), dict) else {}
    return {"name": m.get("name"), "kind": m.get("kind"), "split_layer": m.get("split_layer"),
            "domain": m.get("domain"), "labels": m.get("labels"),
            "backbone": bb.get("name"), "fingerprint": bb.get("fingerprint"),
            "tensors": len(m.get("tensors") or {}) if isinstance(m.get("tensors"), dict) else 0,
            "metrics": m.get("metrics")}


def run_checks(folder: Path, platform: dict | None, *, max_bytes: int,
               load: bool = False) -> list[dict]:
    """The platform's upload checks on a folder, plus the worker's "loads and runs" if `load`."""
    backbone = (platform or {}).get("backbone")
    if load:
        from experts.ml.artifact import inspect_artifact
        from experts.ml.backbone import BackboneConfig, load_backbone

        # A LoRA expert runs the backbone itself: the packaged one, as on the platform.
        summary = _summary(folder / MANIFEST_NAME) or {}
        encoder = load_backbone(BackboneConfig(device="cpu")) if summary.get("kind") == "lora" \
            else None
        checks = inspect_artifact(folder, platform=backbone, max_bytes=max_bytes,
                                  backbone=encoder)
    else:
        checks = inspect_upload(folder, platform=backbone, max_bytes=max_bytes)
    return [{"name": c.name, "ok": c.ok, "message": c.message} for c in checks]


@click.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--no-backbone", is_flag=True,
              help="Do not compare with the platform's backbone (stored at log-in).")
@click.option("--max-mb", type=click.FloatRange(min=0, min_open=True),
              help="Weights size cap in MiB (default: the platform's, else 200).")
@click.option("--load/--no-load", default=None,
              help="Also build the expert and run it once, as a worker does (default: when "
                   "torch is installed).")
@json_option
def inspect(folder: Path, no_backbone: bool, max_mb: float | None, load: bool | None,
            ui: Output) -> None:
    """Run the checks the platform runs at upload on an artifact folder, offline.

    The messages are the platform's own. The backbone is compared with the one the platform
    described at `moecollab login`; without a log-in (or with --no-backbone) it is not.
    Exits 1 when a check fails.
    """
    require_artifact(folder)
    login = None if no_backbone else load_login()
    platform = login.platform if login else None
    max_bytes = int(max_mb * MiB) if max_mb else (
        (platform or {}).get("upload_max_bytes") or DEFAULT_MAX_BYTES)
    if load is None:
        load = _has_torch()
    elif load and not _has_torch():
        raise CliError(f"--load needs torch and transformers: {TRAIN_EXTRA}",
                       code="missing_extra")
    checks = run_checks(folder, platform, max_bytes=max_bytes, load=load)
    failed = [c["name"] for c in checks if not c["ok"]]
    compared = f"the backbone of {login.url}" if platform else None
    result = {"folder": str(folder), "ok": not failed, "checks": checks,
              "backbone_compared_with": compared, "max_bytes": max_bytes,
              "manifest": _summary(folder / MANIFEST_NAME)}

    def human() -> None:
        for check in checks:
            ui.say(check_line(check))
        if not load:
            ui.say("· loads and runs: left to the platform's worker (needs torch here: "
                   f"{TRAIN_EXTRA})")
        if compared is None:
            ui.say("· backbone not compared with a platform's: run `moecollab login` first")
        summary = result["manifest"] or {}
        if summary:
            labels = summary["labels"] if isinstance(summary["labels"], list) else []
            ui.say(f"{summary['kind']} expert for {summary['domain']!r} ({len(labels)} labels), "
                   f"{summary['tensors']} tensors, metrics {json.dumps(summary['metrics'])}")
        if not failed:
            ui.say("artifact OK")

    ui.result(result, human)
    if failed:
        ui.exit_failed(f"artifact rejected ({len(failed)} check(s) failed): {failed[0]}: "
                       f"{next(c['message'] for c in checks if not c['ok'])}")
