"""Surface features of the raw text for the router: hashed character n-grams and words.

The backbone's tokenizer lower-cases and its pooled states blur spelling, so the cues that tell
an SMS ("ok lar, c u 2nite") from a review fragment ("it 's a charming") are mostly gone by the
time the router reads the trunk. A bag of hashed character n-grams of the text as written
(case kept) keeps them, as in fastText's classifiers (Joulin et al. 2017, "Bag of Tricks for
Efficient Text Classification"; Bojanowski et al. 2017 for character n-grams). The router adds
a learned vector per bucket, averaged over the text's distinct buckets (an EmbeddingBag), to
its logits over the trunk features.

Version 2 of the features (the default of new routers) adds what a bag of local n-grams cannot
see: where the text starts and ends (the n-grams are taken of STX + text + ETX, so a capital
that opens the text is a different gram from one inside it) and a few shape tokens of the whole
text: its length band in words, no capital letter at all, a capital first letter, each
punctuation mark split off by spaces (" , " " ." " ?", the treebank tokenisation of SST and
TREC that SMS and news hardly use) and each one glued to its word ("lar," "you?": 98 % of the
news and 75 % of the SMS train texts, under 5 % of the SST and TREC ones), split-off clitics
(" 's", " n't"), a digit, and how it ends. On the full-data head benchmark's dev split
(same experts, router config and seed) they took spam routing from 0.952 to 0.974, balanced
routing from 0.984 to 0.9915 and the summary accuracy from 0.9024 to 0.9070
(docs/benchmarks.md). Version 1 (plain " " + text + " " n-grams and words) stays for routers
trained with it: a router's config records the version its bucket table was learned on, and
the bag must match it.

Hashing is crc32 (stable across processes and Python versions, unlike `hash`), so the ids of a
text depend only on the text, the n-gram range and the number of buckets (the feature cache
keeps the bags of the last text sets it was asked for, not on disk).
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

SURFACE_NGRAMS = (2, 5)  # character n-gram lengths, inclusive, of the padded text
DEFAULT_BUCKETS = 1 << 18  # hash buckets; 4,096 lost 1.8 points of domain accuracy (measured)
MAX_SURFACE_CHARS = 2000  # longer texts are read up to here (about what the backbone keeps)
SURFACE_VERSIONS = (1, 2)  # feature sets (module docstring); a router records its own
LATEST_SURFACE_VERSION = 2  # what new routers are trained on
# Length bands in words (lower bounds) of the version-2 shape token "s:len<band>".
_LENGTH_BANDS = (25, 15, 10, 6, 4, 3, 2, 1, 0)
# A punctuation mark split off by spaces (treebank style), or glued to the word before it.
_SPLIT_PUNCT = re.compile(r"(?:^| )([,.?!;:)])(?= |$)")
_GLUED_PUNCT = re.compile(r"\w([,.?!;:])(?=\s|$)")
_SPLIT_CLITIC = re.compile(r" '(?:s|re|ve|ll|d|m)\b| n't\b")


def check_surface_version(version: int) -> int:
    if version not in SURFACE_VERSIONS:
        raise ValueError(f"surface feature version must be one of {SURFACE_VERSIONS}, "
                         f"got {version!r}")
    return version


def shape_tokens(text: str) -> list[str]:
    """Version 2's tokens of the whole text's shape (module docstring)."""
    words = text.split()
    band = next(lo for lo in _LENGTH_BANDS if len(words) >= lo)
    out = [f"s:len{band}"]
    if not any(c.isupper() for c in text):
        out.append("s:nocaps")
    if text[:1].isupper():
        out.append("s:capstart")
    out += sorted({"s:sp" + m for m in _SPLIT_PUNCT.findall(text)})
    out += sorted({"s:gl" + m for m in _GLUED_PUNCT.findall(text)})
    if _SPLIT_CLITIC.search(text):
        out.append("s:clitic")
    if any(c.isdigit() for c in text):
        out.append("s:digit")
    end = text.rstrip()[-1:]
    out.append("s:end" + (end if end in ".?!" else "a" if end.isalnum() else "o"))
    return out


def surface_ids(text: str, buckets: int, version: int = LATEST_SURFACE_VERSION) -> list[int]:
    """Sorted distinct bucket ids of a text's character n-grams and whitespace words (and, from
    version 2, its start and end marks and shape tokens)."""
    if buckets < 1:
        raise ValueError(f"surface buckets must be >= 1, got {buckets}")
    check_surface_version(version)
    text = text[:MAX_SURFACE_CHARS]
    padded = f" {text} " if version == 1 else f"\x02{text}\x03"
    lo, hi = SURFACE_NGRAMS
    grams = {padded[i : i + n] for n in range(lo, hi + 1) for i in range(len(padded) - n + 1)}
    grams.update("w:" + word for word in text.split())  # the prefix keeps words apart from grams
    if version >= 2:
        grams.update(shape_tokens(text))  # "s:" names no n-gram or word ("w:") either
    return sorted({zlib.crc32(g.encode("utf-8")) % buckets for g in grams})


@dataclass
class SurfaceBag:
    """Bucket ids of N texts, flat with offsets: `ids[offsets[i]:offsets[i + 1]]` is text i's."""

    ids: torch.Tensor  # (total,) int64
    offsets: torch.Tensor  # (N + 1,) int64, offsets[0] = 0
    buckets: int
    version: int = LATEST_SURFACE_VERSION  # the feature set of the ids (SURFACE_VERSIONS)

    @classmethod
    def of_texts(cls, texts: Sequence[str], buckets: int,
                 version: int = LATEST_SURFACE_VERSION) -> SurfaceBag:
        return cls.of_ids([surface_ids(t, buckets, version) for t in texts], buckets, version)

    @classmethod
    def of_ids(cls, rows: Sequence[Sequence[int]], buckets: int,
               version: int = LATEST_SURFACE_VERSION) -> SurfaceBag:
        lengths = torch.tensor([0] + [len(r) for r in rows], dtype=torch.int64)
        flat = [i for r in rows for i in r]
        return cls(torch.tensor(flat, dtype=torch.int64), lengths.cumsum(0), buckets, version)

    def __len__(self) -> int:
        return self.offsets.shape[0] - 1

    def rows(self, rows: Sequence[int] | torch.Tensor) -> SurfaceBag:
        """The bag of `rows`, in that order, on the bag's device (no round trip to the CPU)."""
        device = self.ids.device
        idx = torch.as_tensor(rows, dtype=torch.long).to(device)
        if idx.numel() == 0:
            return SurfaceBag(self.ids.new_zeros(0), self.offsets.new_zeros(1), self.buckets,
                              self.version)
        starts = self.offsets[idx]
        lengths = self.offsets[idx + 1] - starts
        new_offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
        total = int(new_offsets[-1])
        # position of every kept id: start of its row + rank inside the row
        row_of = torch.repeat_interleave(torch.arange(idx.numel(), device=device), lengths,
                                         output_size=total)
        within = torch.arange(total, device=device) - new_offsets[row_of]
        return SurfaceBag(self.ids[starts[row_of] + within], new_offsets, self.buckets,
                          self.version)

    def to(self, device: torch.device | str) -> SurfaceBag:
        return SurfaceBag(self.ids.to(device), self.offsets.to(device), self.buckets,
                          self.version)

    @classmethod
    def concat(cls, bags: Sequence[SurfaceBag]) -> SurfaceBag:
        if len({(b.buckets, b.version) for b in bags}) != 1:
            raise ValueError("surface bags of different bucket counts or feature versions "
                             "cannot be joined")
        ids = torch.cat([b.ids.cpu() for b in bags])
        offsets, total = [torch.zeros(1, dtype=torch.int64)], 0
        for b in bags:
            offsets.append(b.offsets.cpu()[1:] + total)
            total += int(b.offsets[-1])
        return cls(ids, torch.cat(offsets), bags[0].buckets, bags[0].version)
