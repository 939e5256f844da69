"""What the web process checks on an uploaded artifact before keeping it.

The web process reads bytes and headers only: sizes, manifest schema, backbone fingerprint,
the safetensors layout, names/dtypes/shapes against the manifest and the architecture it
describes, and finite values. Building the module and running it is left to the validation
job on a worker, so user weights never execute anything in the process that serves pages.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from experts.ml.artifact import MAX_MANIFEST_BYTES, Check, _Inspection

WORKER_ONLY_CHECKS = {"loads and runs"}


class _WebInspection(_Inspection):
    """The artifact checks without the ones that build and run the expert."""

    def check_load(self) -> str:
        return "left to the validation job"


@dataclass
class CheckedUpload:
    manifest: dict
    manifest_bytes: bytes
    weights_bytes: bytes
    sha256: str
    checks: list[Check]


class UploadRejected(ValueError):
    """The upload failed a check; `check` names which one."""

    def __init__(self, check: str, message: str):
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


@lru_cache(maxsize=1)
def platform_backbone() -> dict:
    """Name and fingerprint of the backbone this platform runs (read once per process; the web
    process never needs the encoder's weights in memory for it)."""
    from experts.ml.backbone import describe_backbone

    return describe_backbone()


def _size(n: int) -> str:
    """Bytes for small sizes, so a small cap never reads as '0 MiB'."""
    return f"{n} bytes" if n < 2**20 else f"{n / 2**20:.1f} MiB"


def read_capped(upload, *, cap: int, what: str) -> bytes:
    """Read an uploaded file after checking its declared size, never more than `cap` bytes."""
    size = getattr(upload, "size", None)
    if size is not None and size > cap:
        raise UploadRejected("file sizes", f"{what} is {_size(size)}; the limit is "
                                           f"{_size(cap)}")
    upload.seek(0)
    data = upload.read(cap + 1)
    if len(data) > cap:
        raise UploadRejected("file sizes", f"{what} is over the {_size(cap)} limit")
    if not data:
        raise UploadRejected("file sizes", f"{what} is empty")
    return data


def check_upload(manifest_upload, weights_upload, *, max_bytes: int) -> CheckedUpload:
    """Run the web-side checks; raise UploadRejected naming the first check that failed."""
    manifest_bytes = read_capped(manifest_upload, cap=MAX_MANIFEST_BYTES, what="manifest")
    weights_bytes = read_capped(weights_upload, cap=max_bytes, what="weights file")
    inspection = _WebInspection(manifest_bytes, weights_bytes,
                                platform_backbone()["fingerprint"], max_bytes)
    checks = [c for c in inspection.run() if c.name not in WORKER_ONLY_CHECKS]
    for check in checks:
        if not check.ok and not check.message.startswith("not run:"):
            raise UploadRejected(check.name, check.message)
    return CheckedUpload(
        manifest=inspection.manifest,
        manifest_bytes=manifest_bytes,
        weights_bytes=weights_bytes,
        sha256=hashlib.sha256(weights_bytes).hexdigest(),
        checks=checks,
    )
