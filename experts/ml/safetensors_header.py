"""The safetensors header: read and checked by hand, always under a size cap, before any tensor.

One parser for everything the platform opens: uploaded expert weights, its own gating bundles
and the backbone's weight files (for the fingerprint).
"""
from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

from experts.ml import safe_json

MAX_HEADER_BYTES = 1024 * 1024  # safetensors JSON header cap; real experts need a few KiB
# Byte size of every dtype safetensors defines, so offsets can be checked before dtypes.
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}
FLOAT_DTYPES = ("F32", "F16", "BF16")  # what expert weights may be: nothing else has a use


class HeaderError(ValueError):
    """A safetensors file's header is malformed or over the cap; the message says how."""


def read_header(read: Callable[[int], bytes], size: int, *, max_header: int) -> tuple[dict, int]:
    """(header object, header length) of a `size`-byte safetensors file read through `read`.

    The declared length is checked against the cap and the file size before anything else is
    read, so a hostile length never makes us allocate it.
    """
    if size < 8:
        raise HeaderError(f"truncated file: {size} bytes, too short for the 8-byte header length")
    prefix = read(8)
    (n,) = struct.unpack("<Q", prefix)
    first = read(1) if size > 8 else b""
    # Every safetensors header is a JSON object, so it starts with "{". A length that does not
    # fit, with no "{" after it, is no length at all: the file is something else (random bytes,
    # a pickle, a zip, JSON), and "oversized header: 1885690914301680234 bytes" would mislead.
    if first != b"{" and not 2 <= n <= min(max_header, size - 8):
        raise HeaderError(not_safetensors(prefix + first))
    if n > max_header:
        raise HeaderError(f"oversized header: {n} bytes declared, the limit is {max_header}")
    if n > size - 8:
        raise HeaderError(f"oversized header: {n} bytes declared but the file holds {size} "
                          "bytes (a truncated file? upload the whole file)")
    if n < 2:
        raise HeaderError(f"safetensors header of {n} bytes declared; the smallest, {{}}, "
                          "has 2")
    try:
        header = safe_json.loads((first + read(n - 1)).decode("utf-8"),
                                 what="safetensors header", path="safetensors header")
    except UnicodeDecodeError as exc:
        raise HeaderError(f"safetensors header is not valid JSON (byte {exc.start + 9} of the "
                          "file is not UTF-8 text); the file is damaged, save it again"
                          ) from None
    except json.JSONDecodeError as exc:
        raise HeaderError(f"safetensors header is not valid JSON ({exc.msg} at byte "
                          f"{exc.pos + 9} of the file); the file is damaged, save it "
                          "again") from None
    except safe_json.JSONRefused as exc:
        raise HeaderError(str(exc)) from None
    if not isinstance(header, dict):
        raise HeaderError("safetensors header must be a JSON object")
    return header, n


def looks_like_safetensors(data: bytes) -> bool:
    """Whether `data` starts like a safetensors file: a plausible header length, then "{"."""
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def not_safetensors(prefix: bytes) -> str:
    """The refusal of a file that is not safetensors at all, saying what it seems to be."""
    why = "it does not start with a safetensors header"
    if prefix[:2] == b"PK":
        why = "it is a zip archive, as torch.save writes (a PyTorch .pt/.bin checkpoint)"
    elif prefix[:1] == b"\x80":
        why = "it is a Python pickle (a PyTorch .pt/.bin checkpoint)"
    elif prefix.lstrip()[:1] in (b"{", b"["):
        why = "it holds JSON text (is it the manifest or a config file?)"
    return (f"this is not a safetensors file: {why}; save the weights with safetensors "
            "(safetensors.torch.save_file) and upload that file")


def header_metadata(data: bytes, *, max_header: int = MAX_HEADER_BYTES) -> dict:
    """The `__metadata__` object of a safetensors file held in memory ({} when absent)."""
    header, _ = read_header(io.BytesIO(data).read, len(data), max_header=max_header)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise HeaderError("safetensors __metadata__ must map strings to strings")
    return meta


def _u64s(xs) -> bool:
    """A list of integers each fitting safetensors' unsigned 64-bit fields."""
    return isinstance(xs, list) and all(
        isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**64 for x in xs
    )


def _brief(value, limit: int = 80) -> str:
    """A header value for a message: short whatever the file holds."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class TensorInfo:
    """One entry of a safetensors header."""

    dtype: str
    shape: list[int]
    begin: int  # offset into the data section
    end: int


def parse_safetensors_header(
    data: bytes, *, max_header: int = MAX_HEADER_BYTES, allowed: tuple[str, ...] = FLOAT_DTYPES,
) -> dict[str, TensorInfo]:
    """Validate a safetensors file's layout from its raw bytes without deserialising any tensor."""
    size = len(data)
    header, n = read_header(io.BytesIO(data).read, size, max_header=max_header)
    meta = header.pop("__metadata__", None)
    if meta is not None and not (
        isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
    ):
        raise HeaderError("safetensors __metadata__ must map strings to strings")
    data_len = size - 8 - n
    infos: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise HeaderError(
                f"tensor {name!r}: header entry needs exactly dtype, shape, data_offsets"
            )
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise HeaderError(f"tensor {name!r} has unknown dtype {_brief(dtype)}")
        if dtype not in allowed:
            raise HeaderError(
                f"tensor {name!r} has dtype {dtype}; allowed dtypes: {', '.join(allowed)}"
            )
        if not _u64s(shape):
            raise HeaderError(f"tensor {name!r} has an invalid shape {_brief(shape)}")
        if not _u64s(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
            raise HeaderError(f"tensor {name!r} has invalid data offsets {_brief(offsets)}")
        begin, end = offsets
        if end > data_len:
            raise HeaderError(
                f"truncated file: tensor {name!r} ends at data byte {end} but the data section "
                f"holds {data_len} bytes (out-of-range offsets)"
            )
        need = math.prod(shape) * DTYPE_SIZES[dtype]
        if need > data_len:  # a product of 64-bit sizes can have more digits than str() allows
            raise HeaderError(
                f"tensor {name!r}: dtype {dtype} and shape {_brief(shape)} need more bytes than "
                f"the {data_len}-byte data section holds"
            )
        if end - begin != need:
            raise HeaderError(
                f"tensor {name!r}: data offsets span {end - begin} bytes, "
                f"dtype {dtype} and shape {shape} need {need}"
            )
        infos[name] = TensorInfo(dtype, list(shape), begin, end)
    spans = sorted(infos.items(), key=lambda kv: (kv[1].begin, kv[1].end))
    for (prev, a), (name, b) in zip(spans, spans[1:], strict=False):
        if b.begin < a.end:
            raise HeaderError(f"tensors {prev!r} and {name!r} have overlapping data offsets")
    cursor = 0
    for name, info in spans:  # no overlaps now, so any mismatch is unused bytes
        if info.begin > cursor:
            raise HeaderError(f"gap of {info.begin - cursor} unused bytes before tensor {name!r}")
        cursor = info.end
    if cursor != data_len:
        raise HeaderError(f"{data_len - cursor} unexpected bytes after the last tensor")
    return infos
