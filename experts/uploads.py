"""What the web process checks on an uploaded artifact before keeping it.

The web process reads bytes and headers only: sizes, manifest schema, the backbone (its
fingerprint, and the layers, width and layer config the manifest states), the safetensors
layout, names/dtypes/shapes against the manifest and the architecture it describes, and
finite values. Building the module and running it is left to the validation
job on a worker, so user weights never execute anything in the process that serves pages.
The checks are experts.ml.upload_checks (no torch), which `moecollab inspect` runs offline too.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from experts.ml.upload_checks import Check, UploadInspection


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
    """Name, fingerprint, layers, width and layer config of the backbone this platform runs (read
    once per process; the web process never needs the encoder's weights in memory for it)."""
    from experts.ml.backbone import describe_backbone

    return describe_backbone()


def check_upload(manifest_upload, weights_upload, *, max_bytes: int) -> CheckedUpload:
    """Run the web-side checks; raise UploadRejected naming the first check that failed.

    An upload whose declared size is over the cap is refused before it is read.
    """
    platform = platform_backbone()
    inspection = UploadInspection(manifest_upload, weights_upload, platform["fingerprint"],
                                  max_bytes, platform=platform)
    checks = list(inspection.run())
    for check in checks:
        if not check.ok and not check.message.startswith("not run:"):
            raise UploadRejected(check.name, check.message)
    return CheckedUpload(
        manifest=inspection.manifest,
        manifest_bytes=inspection.manifest_bytes,
        weights_bytes=inspection.weights_bytes,
        sha256=hashlib.sha256(inspection.weights_bytes).hexdigest(),
        checks=checks,
    )


def check_peft_upload(adapter_config_upload, adapter_model_upload, *, labels, domain: str,
                      max_bytes: int) -> CheckedUpload:
    """A folder PEFT's save_pretrained wrote (adapter_config.json + adapter_model.safetensors)
    plus what PEFT does not record (the domain, the label order): the platform writes the
    manifest, then the same checks as any upload run on it."""
    manifest_bytes, weights = peft_upload_parts(adapter_config_upload, adapter_model_upload,
                                                labels=labels, domain=domain,
                                                max_bytes=max_bytes)
    return check_upload(manifest_bytes, weights, max_bytes=max_bytes)


def peft_upload_parts(adapter_config_upload, adapter_model_upload, *, labels, domain: str,
                      max_bytes: int) -> tuple[bytes, bytes]:
    """(manifest.json, weights) the platform makes of a PEFT adapter's two files; raises
    UploadRejected for a pickle, an oversized file or one that cannot be read at all."""
    import json

    from experts.ml import safe_json
    from experts.ml.lora_config import (
        ADAPTER_CONFIG_NAME,
        PICKLE_REFUSAL,
        PICKLED_WEIGHTS_NAMES,
        peft_manifest,
    )
    from experts.ml.safetensors_header import (
        HeaderError,
        looks_like_safetensors,
        parse_safetensors_header,
    )
    from experts.ml.upload_checks import (
        MAX_MANIFEST_BYTES,
        ArtifactError,
        looks_like_json,
        read_capped,
        swapped_message,
    )

    name = getattr(adapter_model_upload, "name", "") or ""
    if name.rsplit("/", 1)[-1] in PICKLED_WEIGHTS_NAMES or name.endswith((".bin", ".pt")):
        raise UploadRejected("file sizes", f"{name}: {PICKLE_REFUSAL}")
    try:
        config_bytes = read_capped(adapter_config_upload, cap=MAX_MANIFEST_BYTES,
                                   what=ADAPTER_CONFIG_NAME)
        weights = read_capped(adapter_model_upload, cap=max_bytes, what="adapter_model file")
    except ArtifactError as exc:
        raise UploadRejected("file sizes", str(exc)) from None
    if weights[:2] == b"PK" or weights[:1] == b"\x80":  # a torch.save zip or a raw pickle
        raise UploadRejected("safetensors header", PICKLE_REFUSAL)
    if looks_like_safetensors(config_bytes) or looks_like_json(weights):
        raise UploadRejected("manifest json", swapped_message(
            config_bytes, weights, json_field="adapter_config", json_name=ADAPTER_CONFIG_NAME,
            weights_field="adapter_model", weights_name="adapter_model.safetensors"))
    try:
        config = safe_json.loads(config_bytes.decode("utf-8"), what=ADAPTER_CONFIG_NAME,
                                 path=ADAPTER_CONFIG_NAME)
    except UnicodeDecodeError as exc:
        raise UploadRejected("manifest json", f"{ADAPTER_CONFIG_NAME} is not valid JSON: byte "
                             f"{exc.start + 1} is not UTF-8 text") from None
    except (json.JSONDecodeError, safe_json.JSONRefused) as exc:
        raise UploadRejected("manifest json", f"{ADAPTER_CONFIG_NAME} is not valid JSON: {exc}"
                             ) from None
    try:
        infos = parse_safetensors_header(weights)
    except HeaderError as exc:
        raise UploadRejected("safetensors header", str(exc)) from None
    manifest = peft_manifest(config, {k: {"dtype": v.dtype, "shape": v.shape}
                                      for k, v in infos.items()},
                             domain=domain, labels=list(labels), platform=platform_backbone())
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode(), weights
