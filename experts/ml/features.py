"""On-disk cache of backbone features, so a text is encoded once per backbone, layer and length."""
from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from experts.ml.backbone import Backbone
from experts.ml.common import ProgressFn, atomic_write_bytes
from experts.ml.surface import SurfaceBag
from experts.ml.trunk import TrunkSet, TrunkSpec

logger = logging.getLogger(__name__)

_HASH_BYTES = 32  # sha256 digest length
_SHARD_GLOB = "shard-*.safetensors"  # temp files start with ".tmp-" and never match
_SURFACE_SETS = 4  # text sets whose surface bags one FeatureCache keeps in memory


def text_hash(text: str) -> bytes:
    """sha256 of the UTF-8 text: the cache key of one input."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def _split_hashes(hashes: torch.Tensor) -> list[bytes]:
    raw = hashes.contiguous().numpy().tobytes()  # (N, 32) uint8 -> N digests
    return [raw[i : i + _HASH_BYTES] for i in range(0, len(raw), _HASH_BYTES)]


def _atomic_save(tensors: dict[str, torch.Tensor], folder: Path) -> Path:
    """Write a new uniquely named shard (temp files start with ".tmp-" and never match)."""
    name = f"shard-{time.time_ns():x}-{os.getpid()}-{uuid.uuid4().hex[:12]}.safetensors"
    return atomic_write_bytes(folder / name, save(tensors, metadata={"format": "pt"}))


@dataclass
class _PooledIndex:
    """Pooled vectors of one layer: every shard loaded in memory, digest -> (shard, row)."""

    files: set[str] = field(default_factory=set)
    shards: list[torch.Tensor] = field(default_factory=list)  # each (N_s, H) float32
    rows: dict[bytes, tuple[int, int]] = field(default_factory=dict)


@dataclass
class _TokenIndex:
    """Token states of one layer: only offsets live in memory; states are sliced from disk."""

    files: set[str] = field(default_factory=set)
    paths: list[Path] = field(default_factory=list)
    offsets: list[torch.Tensor] = field(default_factory=list)  # each (N_s + 1,) int64
    rows: dict[bytes, tuple[int, int]] = field(default_factory=dict)


class FeatureCache:
    """Pooled and per-token backbone features stored as safetensors shards under `root`."""

    def __init__(self, root: Path | str, backbone: Backbone, *, shard_size: int = 4096,
                 encoder=None) -> None:
        self.backbone = backbone
        # what runs the backbone's forward (experts.ml.inference.open_encoder): float32 torch
        # or ONNX Runtime; its name is in the key, so features of two backends never mix
        self.encoder = encoder or backbone
        self.backend = getattr(self.encoder, "backend", "torch-float32")
        self.shard_size = shard_size  # texts per written shard: bounds lost work on interruption
        # max_length is in the key because truncation changes the features of long texts
        self.root = (Path(root) / f"{backbone.fingerprint}-len{backbone.cfg.max_length}"
                     / self.backend)
        self.encoded_count = 0  # texts this instance sent through the backbone
        self._pooled: dict[int, _PooledIndex] = {}
        self._tokens: dict[int, _TokenIndex] = {}
        # the surface bags of the last few text sets (training's train and dev, evaluation's
        # eval rows, the marketplace's repeated routers read the same sets again)
        self._bags: OrderedDict[tuple[int, bytes], SurfaceBag] = OrderedDict()

    def _dir(self, layer: int, kind: str) -> Path:
        return self.root / f"layer{layer:02d}" / kind

    def _refresh_pooled(self, layer: int) -> _PooledIndex:
        index = self._pooled.setdefault(layer, _PooledIndex())
        folder = self._dir(layer, "pooled")
        for path in sorted(folder.glob(_SHARD_GLOB)) if folder.is_dir() else []:
            if path.name in index.files:
                continue
            index.files.add(path.name)
            try:
                data = load_file(str(path))
            except (SafetensorError, OSError) as exc:
                logger.warning("skipping unreadable feature shard %s: %s", path, exc)
                continue
            sid = len(index.shards)
            index.shards.append(data["pooled"])
            for row, digest in enumerate(_split_hashes(data["hashes"])):
                index.rows.setdefault(digest, (sid, row))
        return index

    def _refresh_tokens(self, layer: int) -> _TokenIndex:
        index = self._tokens.setdefault(layer, _TokenIndex())
        folder = self._dir(layer, "tokens")
        for path in sorted(folder.glob(_SHARD_GLOB)) if folder.is_dir() else []:
            if path.name in index.files:
                continue
            index.files.add(path.name)
            try:
                with safe_open(str(path), framework="pt") as f:
                    hashes, offsets = f.get_tensor("hashes"), f.get_tensor("offsets")
            except (SafetensorError, OSError) as exc:
                logger.warning("skipping unreadable feature shard %s: %s", path, exc)
                continue
            sid = len(index.paths)
            index.paths.append(path)
            index.offsets.append(offsets)
            for row, digest in enumerate(_split_hashes(hashes)):
                index.rows.setdefault(digest, (sid, row))
        return index

    def _encode_missing(
        self, texts: list[str], spec: TrunkSpec, on_progress: ProgressFn | None
    ) -> None:
        """Encode `texts` once up to spec.depth and write a shard for every requested layer."""
        total = len(texts)
        logger.info("encoding %d uncached texts with %s (pooled %s, tokens %s)", total,
                    self.backend, list(spec.pooled), list(spec.tokens))
        for start in range(0, total, self.shard_size):
            chunk = texts[start : start + self.shard_size]
            hashes = torch.frombuffer(
                bytearray(b"".join(text_hash(t) for t in chunk)), dtype=torch.uint8
            ).view(len(chunk), _HASH_BYTES)
            encoded = self.encoder.encode_set(chunk, spec)
            for layer, states in encoded.tokens.items():
                lengths = torch.tensor([0] + [s.shape[0] for s in states], dtype=torch.int64)
                _atomic_save(
                    {"hashes": hashes, "offsets": lengths.cumsum(0), "states": torch.cat(states)},
                    self._dir(layer, "tokens"),
                )
            for layer in spec.pooled:
                _atomic_save({"hashes": hashes, "pooled": encoded.pooled[layer]},
                             self._dir(layer, "pooled"))
            self.encoded_count += len(chunk)
            if on_progress is not None:
                on_progress(min(start + len(chunk), total), total, "encoded texts")

    def load(
        self, texts: Sequence[str], spec: TrunkSpec, *, on_progress: ProgressFn | None = None
    ) -> TrunkSet:
        """The TrunkSet of `texts` for `spec`, encoding what is missing in one backbone pass."""
        ids, surface, version = spec.ids, spec.surface, spec.surface_version
        spec = TrunkSpec.of(pooled=spec.all_pooled, tokens=spec.tokens)
        digests = [text_hash(t) for t in texts]
        missing: dict[bytes, str] = {}
        for layer in spec.pooled:
            index = self._pooled.get(layer) or self._refresh_pooled(layer)
            if any(d not in index.rows for d in digests):
                index = self._refresh_pooled(layer)  # another process may have written them
                missing.update((d, t) for d, t in zip(digests, texts, strict=True)
                               if d not in index.rows)
        for layer in spec.tokens:
            index = self._tokens.get(layer) or self._refresh_tokens(layer)
            if any(d not in index.rows for d in digests):
                index = self._refresh_tokens(layer)
                missing.update((d, t) for d, t in zip(digests, texts, strict=True)
                               if d not in index.rows)
        if missing:
            self._encode_missing(list(missing.values()), spec, on_progress)
        return TrunkSet(
            pooled={layer: self._read_pooled(digests, layer) for layer in spec.pooled},
            tokens={layer: self._read_tokens(digests, layer) for layer in spec.tokens},
            # Token ids and surface features are not stored: both are cheap next to encoding.
            ids=self.backbone.tokenize(texts) if ids else None,
            surface=self._surface(texts, digests, surface, version) if surface else None,
        )

    def _surface(self, texts: Sequence[str], digests: Sequence[bytes], buckets: int,
                 version: int) -> SurfaceBag:
        """The texts' surface bag, hashed once per text set while it is among the last few."""
        key = (buckets, version, hashlib.sha256(b"".join(digests)).digest())
        bag = self._bags.get(key)
        if bag is None:
            bag = self._bags[key] = SurfaceBag.of_texts(texts, buckets, version)
            while len(self._bags) > _SURFACE_SETS:
                self._bags.popitem(last=False)
        self._bags.move_to_end(key)
        return bag

    def pooled(
        self, texts: Sequence[str], *, layer: int, on_progress: ProgressFn | None = None
    ) -> torch.Tensor:
        """(N, H) float32 mean-pooled states of `layer`, encoding only texts not cached yet."""
        return self.load(texts, TrunkSpec.of(pooled=[layer]), on_progress=on_progress).pooled[layer]

    def tokens(
        self, texts: Sequence[str], *, layer: int, on_progress: ProgressFn | None = None
    ) -> list[torch.Tensor]:
        """Per-text (T_i, H) fp16 token states of `layer`, encoding only texts not cached yet."""
        return self.load(texts, TrunkSpec.of(tokens=[layer]), on_progress=on_progress).tokens[layer]

    def _read_pooled(self, digests: list[bytes], layer: int) -> torch.Tensor:
        index = self._refresh_pooled(layer)
        out = torch.empty((len(digests), self.backbone.hidden_size), dtype=torch.float32)
        by_shard: dict[int, tuple[list[int], list[int]]] = {}
        for pos, digest in enumerate(digests):
            sid, row = index.rows[digest]
            positions, rows = by_shard.setdefault(sid, ([], []))
            positions.append(pos)
            rows.append(row)
        for sid, (positions, rows) in by_shard.items():
            out[torch.tensor(positions)] = index.shards[sid][torch.tensor(rows)]
        return out

    def _read_tokens(self, digests: list[bytes], layer: int) -> list[torch.Tensor]:
        index = self._refresh_tokens(layer)
        out: list[torch.Tensor | None] = [None] * len(digests)
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for pos, digest in enumerate(digests):
            sid, row = index.rows[digest]
            by_shard.setdefault(sid, []).append((pos, row))
        for sid, wanted in by_shard.items():
            offsets = index.offsets[sid].tolist()
            with safe_open(str(index.paths[sid]), framework="pt") as f:
                # One read of the shard beats thousands of small slices when most rows are wanted.
                if len(wanted) * 2 >= len(offsets) - 1:
                    states = f.get_tensor("states")
                    for pos, row in wanted:
                        out[pos] = states[offsets[row] : offsets[row + 1]]
                else:
                    sl = f.get_slice("states")
                    for pos, row in wanted:
                        out[pos] = sl[offsets[row] : offsets[row + 1]]
        return out  # type: ignore[return-value]
