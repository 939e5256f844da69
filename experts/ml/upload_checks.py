"""The checks an expert artifact passes at upload, on its bytes alone: no torch, no Django.

One implementation for three callers, so each says the same thing in the same words: the web
process runs these on every upload (experts/uploads.py), a worker runs them again and then builds
and runs the expert (experts/ml/artifact.py adds "loads and runs"), and a contributor runs them
offline before pushing (`moecollab inspect`). Nothing here deserialises a tensor into a framework:
the safetensors header is parsed by hand, and NaN/Inf are found from the raw bits with numpy.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experts.ml import safe_json
from experts.ml.architecture import expected_tensors
from experts.ml.manifest import (
    ALLOWED_DTYPES,
    FORMAT_VERSION,
    expert_config_from_manifest,
    validate_manifest,
)
from experts.ml.safetensors_header import (
    HeaderError,
    TensorInfo,
    looks_like_safetensors,
    parse_safetensors_header,
)

MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "weights.safetensors"
MiB = 1024 * 1024
DEFAULT_MAX_BYTES = 200 * MiB  # weights file cap
MAX_MANIFEST_BYTES = 1 * MiB
Step = tuple[str, tuple[str, ...], Callable[[], str]]  # (check name, checks it needs, run it)


class ArtifactError(ValueError):
    """An expert artifact is malformed, unsafe or incompatible; the message says exactly why."""


@dataclass
class Check:
    """Outcome of one artifact check."""

    name: str
    ok: bool
    message: str


def _size(n: int) -> str:
    """Bytes for small sizes, so a small cap never reads as '0 MiB'."""
    return f"{n} bytes" if n < MiB else f"{n / MiB:.1f} MiB"


def read_capped(src: Any, *, cap: int, what: str) -> bytes:
    """The bytes of `src` (bytes, a path, or a binary file object such as an upload), never
    reading more than `cap` + 1: a file whose declared size is over the cap is not read at all."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        size: int | None = len(data)
    elif isinstance(src, (str, Path)):
        path = Path(src)
        if not path.is_file():
            raise ArtifactError(f"{what} not found: {path}")
        size = path.stat().st_size
        data = b""
    else:
        size = getattr(src, "size", None)
    if size is not None and size > cap:
        raise ArtifactError(f"{what} is {_size(size)}; the limit is {_size(cap)}")
    if isinstance(src, (str, Path)):
        with Path(src).open("rb") as f:
            data = f.read(cap + 1)
    elif not isinstance(src, (bytes, bytearray, memoryview)):
        src.seek(0)
        data = src.read(cap + 1)
    if len(data) > cap:
        raise ArtifactError(f"{what} is over the {_size(cap)} limit")
    if not data:
        raise ArtifactError(f"{what} is empty")
    return data


def artifact_paths(folder: Path) -> tuple[Path, Path]:
    """(manifest, weights) of an artifact folder."""
    # A LoRA expert keeps PEFT's file name for its weights, so peft loads the folder as is.
    lora = folder / "adapter_model.safetensors"
    weights = lora if lora.is_file() and not (folder / WEIGHTS_NAME).is_file() else (
        folder / WEIGHTS_NAME)
    return folder / MANIFEST_NAME, weights


def _resolve(manifest: Any, weights: Any) -> tuple[Any, Any]:
    if weights is None and isinstance(manifest, (str, Path)) and Path(manifest).is_dir():
        return artifact_paths(Path(manifest))
    return manifest, weights


# The dropout rates of a branch's layers act only while training: a contributor may have
# fine-tuned with others, and the layers still run the same at inference.
_TRAINING_ONLY_LAYER_KEYS = {"hidden_dropout_prob", "attention_probs_dropout_prob"}


def platform_mismatches(manifest: dict, platform: dict) -> list[str]:
    """Why a schema-valid manifest cannot run on the platform's backbone, one message a field.

    The fingerprint names the backbone, but a manifest states its layers, width and (for a
    branch) layer config itself; each must be the platform's, or the expert fails on a worker.
    """
    name, errors = platform["name"], []
    bb = manifest["backbone"]
    for key, what in (("num_layers", "layers"), ("hidden_size", "hidden size")):
        if bb[key] != platform[key]:
            errors.append(f"manifest.backbone.{key} is {bb[key]}; the platform's backbone "
                          f"{name} has {what} {platform[key]}")
    layers, kind, split = platform["num_layers"], manifest["kind"], manifest["split_layer"]
    top = layers if kind != "branch" else layers - 1  # a branch keeps at least one layer
    if kind == "lora" and split != layers:
        errors.append(f"manifest.split_layer is {split}; a LoRA expert adapts the whole "
                      f"backbone, so it must be {layers} (the layers of {name})")
    elif not 0 <= split <= top:
        errors.append(f"manifest.split_layer is {split}; on the platform's backbone {name} "
                      f"({layers} layers) a {kind} expert's split_layer must be in 0..{top}")
    if kind == "branch":
        theirs = manifest["architecture"]["layer_config"]
        for key, ours in platform["layer_config"].items():
            if key not in _TRAINING_ONLY_LAYER_KEYS and theirs[key] != ours:
                errors.append(f"manifest.architecture.layer_config.{key} is {theirs[key]!r}; "
                              f"the platform's backbone {name} has {ours!r}")
    return errors


# (unsigned view, exponent bits, mantissa bits) of each float dtype weights may have: a value is
# NaN or Inf exactly when all its exponent bits are set (NaN with a non-zero mantissa).
_FLOAT_BITS = {"F32": ("<u4", 0x7F800000, 0x007FFFFF), "F16": ("<u2", 0x7C00, 0x03FF),
               "BF16": ("<u2", 0x7F80, 0x007F)}


def non_finite(data: bytes, info: TensorInfo, *, data_start: int) -> str | None:
    """'NaN' or 'Inf' when the tensor holds one (NaN first, as torch.isnan/isinf would), else
    None; reads the raw bits, so half precision and bfloat16 need no conversion."""
    view, exponent, mantissa = _FLOAT_BITS[info.dtype]
    itemsize = np.dtype(view).itemsize
    if info.end == info.begin:
        return None
    bits = np.frombuffer(data, dtype=view, count=(info.end - info.begin) // itemsize,
                         offset=data_start + info.begin)
    special = (bits & exponent) == exponent
    if not special.any():
        return None
    return "NaN" if ((bits & mantissa) != 0)[special].any() else "Inf"


def looks_like_json(data: bytes) -> bool:
    """Whether `data` starts like a JSON object (a manifest or a config), not like weights.

    A safetensors file can start with "{" too: its first byte is the low byte of the header
    length. Its 9th byte is "{" as well, which is what tells them apart.
    """
    return data.lstrip()[:1] == b"{" and not looks_like_safetensors(data)


def swapped_message(json_bytes: bytes, weights_bytes: bytes, *, json_field: str = "manifest",
                    json_name: str = MANIFEST_NAME, weights_field: str = "weights",
                    weights_name: str = WEIGHTS_NAME) -> str:
    """The refusal when the JSON file and the weights file seem to have traded places."""
    if looks_like_safetensors(json_bytes) and looks_like_json(weights_bytes):
        return (f"these look swapped: the file sent as {json_field} holds safetensors weights "
                f"and the file sent as {weights_field} holds JSON; send {json_name} as "
                f"{json_field} and {weights_name} as {weights_field}")
    if looks_like_safetensors(json_bytes):
        return (f"the file sent as {json_field} holds safetensors weights, not JSON; send "
                f"{json_name} as {json_field}")
    return (f"the file sent as {weights_field} holds JSON (is it {json_name}?), not "
            f"safetensors weights; send {weights_name} as {weights_field}")


class UploadInspection:
    """Runs the upload checks in order, keeping what each one established for the next."""

    def __init__(
        self, manifest_src: Any, weights_src: Any, fingerprint: str | None, max_bytes: int,
        platform: dict | None = None,
    ) -> None:
        self.src = _resolve(manifest_src, weights_src)
        self.fingerprint = fingerprint
        # describe_backbone() of the platform: the manifest must fit its layers and width too.
        self.platform = platform
        self.max_bytes = max_bytes
        self.manifest: dict | None = None
        self.manifest_bytes = b""
        self.weights_bytes = b""
        self.infos: dict[str, TensorInfo] | None = None

    def steps(self) -> list[Step]:
        return [
            ("file sizes", (), self.check_sizes),
            ("manifest json", ("file sizes",), self.check_json),
            ("manifest schema", ("manifest json",), self.check_schema),
            ("backbone", ("manifest schema",), self.check_backbone),
            ("safetensors header", ("file sizes",), self.check_header),
            ("tensors match manifest", ("manifest schema", "safetensors header"), self.check_names),
            ("tensors match architecture", ("tensors match manifest", "backbone"),
             self.check_architecture),
            ("finite values", ("safetensors header",), self.check_finite),
        ]

    def run(self) -> Iterator[Check]:
        passed: set[str] = set()
        for name, deps, fn in self.steps():
            blocked = [d for d in deps if d not in passed]
            if blocked:
                yield Check(name, False, f"not run: needs {', '.join(blocked)} to pass")
                continue
            try:
                message = fn()
            except ArtifactError as exc:
                yield Check(name, False, str(exc))
                continue
            passed.add(name)
            yield Check(name, True, message)

    def check_sizes(self) -> str:
        manifest_src, weights_src = self.src
        if weights_src is None:
            raise ArtifactError("no weights file given")
        self.manifest_bytes = read_capped(manifest_src, cap=MAX_MANIFEST_BYTES, what="manifest")
        self.weights_bytes = read_capped(weights_src, cap=self.max_bytes, what="weights file")
        weights_mib = len(self.weights_bytes) / MiB
        return f"manifest {len(self.manifest_bytes)} B, weights {weights_mib:.2f} MiB"

    def check_json(self) -> str:
        if looks_like_safetensors(self.manifest_bytes):
            raise ArtifactError(swapped_message(self.manifest_bytes, self.weights_bytes))
        try:
            self.manifest = safe_json.loads(self.manifest_bytes.decode("utf-8"), what="manifest",
                                            path="manifest")
        except UnicodeDecodeError as exc:
            raise ArtifactError(f"manifest is not valid UTF-8 JSON: byte {exc.start + 1} is not "
                                f"UTF-8 text; {MANIFEST_NAME} is a JSON text file") from None
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"manifest is not valid UTF-8 JSON: {exc}") from None
        except safe_json.JSONRefused as exc:
            raise ArtifactError(str(exc)) from None
        return "parsed"

    def check_schema(self) -> str:
        errors = validate_manifest(self.manifest)
        if errors:
            raise ArtifactError("; ".join(errors))
        m = self.manifest
        return f"format_version {FORMAT_VERSION}, {m['kind']} expert for {m['domain']!r}"

    def check_backbone(self) -> str:
        fp = self.manifest["backbone"]["fingerprint"]
        if self.fingerprint is None:
            return f"built on {fp[:12]}… (no platform fingerprint given, not compared)"
        if fp != self.fingerprint:
            raise ArtifactError(f"built on backbone {fp}, this platform runs {self.fingerprint}")
        if self.platform is not None:
            errors = platform_mismatches(self.manifest, self.platform)
            if errors:
                raise ArtifactError("; ".join(errors))
        return f"matches platform backbone {fp[:12]}…"

    def check_header(self) -> str:
        if looks_like_json(self.weights_bytes):
            raise ArtifactError(swapped_message(self.manifest_bytes, self.weights_bytes))
        try:
            self.infos = parse_safetensors_header(self.weights_bytes, allowed=ALLOWED_DTYPES)
        except HeaderError as exc:
            raise ArtifactError(str(exc)) from None
        return f"{len(self.infos)} tensors, layout valid"

    def check_names(self) -> str:
        listed = self.manifest["tensors"]
        for name in self.infos:
            if name not in listed:
                raise ArtifactError(
                    f"unknown tensor {name!r}: in the weights file but not in manifest.tensors"
                )
        for name, spec in listed.items():
            info = self.infos.get(name)
            if info is None:
                raise ArtifactError(
                    f"missing tensor {name!r}: listed in manifest.tensors, not in the weights file"
                )
            if info.dtype != spec["dtype"]:
                raise ArtifactError(
                    f"tensor {name!r} is {info.dtype} in the weights file "
                    f"but {spec['dtype']} in the manifest"
                )
            if info.shape != spec["shape"]:
                raise ArtifactError(
                    f"tensor {name!r} has shape {info.shape} in the weights file "
                    f"but {spec['shape']} in the manifest"
                )
        return f"{len(listed)} tensors, names, dtypes and shapes agree"

    def check_architecture(self) -> str:
        try:
            expected = expected_tensors(expert_config_from_manifest(self.manifest))
        except ValueError as exc:
            raise ArtifactError(str(exc)) from None
        arch = self.manifest["architecture"]
        n_labels = len(self.manifest["labels"])
        if self.manifest["kind"] == "lora":
            lora = arch["adapter_config"]
            desc = (f"LoRA adapter, rank {lora.get('r', 8)} on "
                    f"{', '.join(lora['target_modules'])}, head over {n_labels} labels")
        else:
            desc = (f"{self.manifest['kind']} expert, {n_labels} labels, "
                    f"mlp_hidden {arch['mlp_hidden']}")
        for name, info in self.infos.items():
            if name not in expected:
                raise ArtifactError(
                    f"unknown tensor {name!r}: the described architecture ({desc}) "
                    "has no such tensor"
                )
            if info.shape != expected[name]:
                raise ArtifactError(
                    f"tensor {name!r} has shape {info.shape} but the described architecture "
                    f"({desc}) needs {expected[name]}"
                )
        for name in expected:
            if name not in self.infos:
                raise ArtifactError(
                    f"missing tensor {name!r}: the described architecture ({desc}) needs it"
                )
        return desc

    def check_finite(self) -> str:
        (header_len,) = struct.unpack("<Q", self.weights_bytes[:8])
        for name in sorted(self.infos):
            found = non_finite(self.weights_bytes, self.infos[name], data_start=8 + header_len)
            if found is not None:
                raise ArtifactError(f"tensor {name!r} contains {found}")
        return "no NaN or Inf"


def inspect_upload(
    manifest: bytes | str | Path | Any, weights: bytes | str | Path | Any | None = None, *,
    platform: dict | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[Check]:
    """The upload checks of an artifact (a folder, or manifest + weights), each reported.

    `platform` is the platform backbone's description (experts.ml.backbone.describe_backbone,
    or GET /api/v1/platform/); without it the fingerprint is not compared.
    """
    fingerprint = platform["fingerprint"] if platform else None
    return list(UploadInspection(manifest, weights, fingerprint, max_bytes, platform).run())
