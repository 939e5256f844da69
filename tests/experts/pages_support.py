"""Form payloads for the marketplace page tests (row builders live in tests/helpers.py)."""
from __future__ import annotations

import json

from django.core.files.uploadedfile import SimpleUploadedFile

from tests.helpers import TOY_LABELS, artifact_bytes


def real_artifact(*, seed: int = 0) -> tuple[bytes, bytes]:
    """(manifest.json, weights.safetensors) of a tiny head expert for the toy domain."""
    return artifact_bytes(domain="toy", labels=TOY_LABELS, seed=seed, mlp_hidden=8)


def upload_files(manifest: bytes, weights: bytes) -> dict:
    return {"manifest": SimpleUploadedFile("manifest.json", manifest, "application/json"),
            "weights": SimpleUploadedFile("weights.safetensors", weights,
                                          "application/octet-stream")}


def dataset_file(rows: list[tuple[str, str]], name: str = "data.jsonl") -> SimpleUploadedFile:
    body = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows)
    return SimpleUploadedFile(name, body.encode(), "application/jsonl")
