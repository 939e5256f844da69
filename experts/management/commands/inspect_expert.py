"""`manage.py inspect_expert DIR`: run every artifact check and summarise the manifest."""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from experts.ml.artifact import DEFAULT_MAX_BYTES, MANIFEST_NAME, WEIGHTS_NAME, inspect_artifact
from experts.ml.backbone import BackboneConfig, load_backbone


class Command(BaseCommand):
    help = "Validate an expert artifact folder (manifest.json + weights.safetensors)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path, help="artifact folder")
        parser.add_argument("--no-backbone", action="store_true",
                            help="skip comparing the fingerprint with the platform backbone")
        parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)

    def handle(self, *args, **opts) -> None:
        folder: Path = opts["path"]
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder with {MANIFEST_NAME} and {WEIGHTS_NAME}")
        fingerprint = None if opts["no_backbone"] else load_backbone(BackboneConfig()).fingerprint
        if fingerprint is not None:
            self.stdout.write(f"platform backbone fingerprint: {fingerprint}")
        checks = inspect_artifact(folder, expected_fingerprint=fingerprint,
                                  max_bytes=opts["max_bytes"])
        for check in checks:
            mark = self.style.SUCCESS("✓") if check.ok else self.style.ERROR("✗")
            self.stdout.write(f"{mark} {check.name}: {check.message}")
        self._summary(folder / MANIFEST_NAME)
        failed = [c.name for c in checks if not c.ok]
        if failed:
            raise CommandError(f"artifact rejected: {len(failed)} check(s) failed")
        self.stdout.write(self.style.SUCCESS("artifact OK"))

    def _summary(self, manifest_path: Path) -> None:
        try:
            m = json.loads(manifest_path.read_text(encoding="utf-8"))
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
