"""Surface features of the raw text for the router: hashed character n-grams and words.

The backbone's tokenizer lower-cases and its pooled states blur spelling, so the cues that tell
an SMS ("ok lar, c u 2nite") from a review fragment ("it 's a charming") are mostly gone by the
time the router reads the trunk. A bag of hashed character n-grams of the text as written
(case kept) keeps them, as in fastText's classifiers (Joulin et al. 2017, "Bag of Tricks for
Efficient Text Classification"; Bojanowski et al. 2017 for character n-grams). The router adds
a learned vector per bucket, averaged over the text's distinct buckets (an EmbeddingBag), to
its logits over the trunk features.

Hashing is crc32 (stable across processes and Python versions, unlike `hash`), so the ids of a
text depend only on the text, the n-gram range and the number of buckets (the feature cache
keeps the bags of the last text sets it was asked for, not on disk).
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

SURFACE_NGRAMS = (2, 5)  # character n-gram lengths, inclusive, of " " + text + " "
DEFAULT_BUCKETS = 1 << 18  # hash buckets; 4,096 lost 1.8 points of domain accuracy (measured)
MAX_SURFACE_CHARS = 2000  # longer texts are read up to here (about what the backbone keeps)


def surface_ids(text: str, buckets: int) -> list[int]:
    """Sorted distinct bucket ids of a text's character n-grams and whitespace words."""
    if buckets < 1:
        raise ValueError(f"surface buckets must be >= 1, got {buckets}")
    text = text[:MAX_SURFACE_CHARS]
    padded = f" {text} "
    lo, hi = SURFACE_NGRAMS
    grams = {padded[i : i + n] for n in range(lo, hi + 1) for i in range(len(padded) - n + 1)}
    grams.update("w:" + word for word in text.split())  # the prefix keeps words apart from grams
    return sorted({zlib.crc32(g.encode("utf-8")) % buckets for g in grams})


@dataclass
class SurfaceBag:
    """Bucket ids of N texts, flat with offsets: `ids[offsets[i]:offsets[i + 1]]` is text i's."""

    ids: torch.Tensor  # (total,) int64
    offsets: torch.Tensor  # (N + 1,) int64, offsets[0] = 0
    buckets: int

    @classmethod
    def of_texts(cls, texts: Sequence[str], buckets: int) -> SurfaceBag:
        return cls.of_ids([surface_ids(t, buckets) for t in texts], buckets)

    @classmethod
    def of_ids(cls, rows: Sequence[Sequence[int]], buckets: int) -> SurfaceBag:
        lengths = torch.tensor([0] + [len(r) for r in rows], dtype=torch.int64)
        flat = [i for r in rows for i in r]
        return cls(torch.tensor(flat, dtype=torch.int64), lengths.cumsum(0), buckets)

    def __len__(self) -> int:
        return self.offsets.shape[0] - 1

    def rows(self, rows: Sequence[int] | torch.Tensor) -> SurfaceBag:
        """The bag of `rows`, in that order, on the bag's device (no round trip to the CPU)."""
        device = self.ids.device
        idx = torch.as_tensor(rows, dtype=torch.long).to(device)
        if idx.numel() == 0:
            return SurfaceBag(self.ids.new_zeros(0), self.offsets.new_zeros(1), self.buckets)
        starts = self.offsets[idx]
        lengths = self.offsets[idx + 1] - starts
        new_offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
        total = int(new_offsets[-1])
        # position of every kept id: start of its row + rank inside the row
        row_of = torch.repeat_interleave(torch.arange(idx.numel(), device=device), lengths,
                                         output_size=total)
        within = torch.arange(total, device=device) - new_offsets[row_of]
        return SurfaceBag(self.ids[starts[row_of] + within], new_offsets, self.buckets)

    def to(self, device: torch.device | str) -> SurfaceBag:
        return SurfaceBag(self.ids.to(device), self.offsets.to(device), self.buckets)

    @classmethod
    def concat(cls, bags: Sequence[SurfaceBag]) -> SurfaceBag:
        if len({b.buckets for b in bags}) != 1:
            raise ValueError("surface bags of different bucket counts cannot be joined")
        ids = torch.cat([b.ids.cpu() for b in bags])
        offsets, total = [torch.zeros(1, dtype=torch.int64)], 0
        for b in bags:
            offsets.append(b.offsets.cpu()[1:] + total)
            total += int(b.offsets[-1])
        return cls(ids, torch.cat(offsets), bags[0].buckets)
