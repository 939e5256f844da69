"""`manage.py inspect_expert DIR`: run every artifact check and summarise the manifest.

DIR is an artifact folder (manifest.json + weights.safetensors, or a LoRA expert's
manifest.json + adapter files), or a folder peft's save_pretrained wrote: then --labels gives
the order of the adapter's outputs, which PEFT does not record.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from experts.ml.artifact import DEFAULT_MAX_BYTES, MANIFEST_NAME, WEIGHTS_NAME, inspect_artifact
from experts.ml.backbone import BackboneConfig, load_backbone
from experts.ml.lora_config import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    PICKLE_REFUSAL,
    PICKLED_WEIGHTS_NAMES,
)
from experts.uploads import UploadRejected, peft_upload_parts, platform_backbone


class Command(BaseCommand):
    help = ("Validate an expert artifact folder (manifest.json + weights.safetensors), or a "
            "LoRA adapter folder written by peft's save_pretrained (with --labels).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path, help="artifact or adapter folder")
        parser.add_argument("--labels", help="LoRA adapter folder: the labels in the order of "
                            "its head's outputs, comma-separated")
        parser.add_argument("--domain", help="LoRA adapter folder: the domain it is for "
                            "(default: the folder's name)")
        parser.add_argument("--no-backbone", action="store_true",
                            help="skip comparing with the platform backbone (and running it)")
        parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)

    def handle(self, *args, **opts) -> None:
        folder: Path = opts["path"]
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder")
        backbone = None if opts["no_backbone"] else load_backbone(BackboneConfig())
        platform = None if backbone is None else platform_backbone()
        if backbone is not None:
            self.stdout.write(f"platform backbone fingerprint: {backbone.fingerprint}")
        manifest, weights = self._sources(folder, opts, platform)
        checks = inspect_artifact(manifest, weights, platform=platform,
                                  max_bytes=opts["max_bytes"], backbone=backbone)
        for check in checks:
            mark = self.style.SUCCESS("✓") if check.ok else self.style.ERROR("✗")
            self.stdout.write(f"{mark} {check.name}: {check.message}")
        self._summary(manifest)
        failed = [c.name for c in checks if not c.ok]
        if failed:
            raise CommandError(f"artifact rejected: {len(failed)} check(s) failed")
        self.stdout.write(self.style.SUCCESS("artifact OK"))

    def _sources(self, folder: Path, opts: dict, platform: dict | None):
        """(manifest, weights) to inspect: files of an artifact, or what the platform makes of
        a plain PEFT folder (exactly what an upload of it would be checked as)."""
        if (folder / MANIFEST_NAME).is_file():
            lora = folder / ADAPTER_WEIGHTS_NAME
            weights = lora if lora.is_file() and not (folder / WEIGHTS_NAME).is_file() else (
                folder / WEIGHTS_NAME)
            return folder / MANIFEST_NAME, weights
        if not (folder / ADAPTER_CONFIG_NAME).is_file():
            raise CommandError(f"{folder} holds neither {MANIFEST_NAME} (an expert artifact) nor "
                               f"{ADAPTER_CONFIG_NAME} (a LoRA adapter)")
        if not (folder / ADAPTER_WEIGHTS_NAME).is_file():
            pickled = [n for n in PICKLED_WEIGHTS_NAMES if (folder / n).is_file()]
            raise CommandError(f"{pickled[0]}: {PICKLE_REFUSAL}" if pickled else
                               f"{folder} has no {ADAPTER_WEIGHTS_NAME}")
        if not opts["labels"]:
            raise CommandError("a LoRA adapter folder needs --labels (the order of its head's "
                               "outputs, comma-separated): peft does not record them")
        if platform is None:
            raise CommandError("a LoRA adapter folder is checked against the platform backbone; "
                               "drop --no-backbone")
        labels = [x.strip() for x in opts["labels"].split(",")]
        try:
            return peft_upload_parts(folder / ADAPTER_CONFIG_NAME, folder / ADAPTER_WEIGHTS_NAME,
                                     labels=labels, domain=opts["domain"] or folder.name,
                                     max_bytes=opts["max_bytes"])
        except UploadRejected as exc:
            raise CommandError(str(exc)) from None

    def _summary(self, manifest) -> None:
        try:
            raw = manifest if isinstance(manifest, bytes) else Path(manifest).read_bytes()
            m = json.loads(raw)
        except (OSError, ValueError):
            return
        if not isinstance(m, dict):
            return
        bb = m.get("backbone") if isinstance(m.get("backbone"), dict) else {}
        lines = [
            f"name:        {m.get('name', '-')}",
            f"kind:        {m.get('kind')}  (split layer {m.get('split_layer')})",
            f"domain:      {m.get('domain')}",
            f"labels:      {m.get('labels')}",
            f"backbone:    {bb.get('name')} {str(bb.get('fingerprint'))[:16]}…",
            f"tensors:     {len(m.get('tensors') or {})}",
            f"metrics:     {json.dumps(m.get('metrics'))}",
        ]
        self.stdout.write("\n".join(lines))
