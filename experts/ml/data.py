"""Domain data sets: a folder with domain.json, train.jsonl, dev.jsonl and optionally test.jsonl."""
from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from experts.datasets import DatasetError, parse_dataset

Example = tuple[str, str]  # (text, label)
MAX_ROWS = 10_000_000  # a sanity bound for local folders; uploads have their own cap


class DomainDataError(ValueError):
    """A domain folder is malformed; the message names the file and line."""


@dataclass
class DomainData:
    """One classification domain: its label list and its splits."""

    name: str  # domain name, e.g. "news"
    description: str  # one line shown to users
    labels: list[str]  # label list in the order experts output logits
    train: list[Example] = field(default_factory=list)  # training examples
    dev: list[Example] = field(default_factory=list)  # model selection / early stopping
    test: list[Example] = field(default_factory=list)  # held-out scoring; may be empty (private)

    def dev_or_held_out(self, *, fraction: float = 0.1, seed: int = 0
                        ) -> tuple[list[Example], list[Example]]:
        """(train, dev): the dev split, or a held-out slice of train when there is none."""
        if self.dev:
            return list(self.train), list(self.dev)
        return hold_out(self.train, fraction=fraction, seed=seed, what=f"domain {self.name!r}")

    def label_ids(self, split: list[Example]) -> list[int]:
        """Integer label ids of a split, in the order of `labels`."""
        index = {label: i for i, label in enumerate(self.labels)}
        return [index[label] for _, label in split]


def read_jsonl(path: Path, labels: list[str]) -> list[Example]:
    """(text, label) pairs of a JSONL file, with errors naming the file and line."""
    with path.open("rb") as f:
        try:
            parsed = parse_dataset(iter(lambda: f.read(1 << 20), b""), filename=path.name,
                                   labels=labels, max_rows=MAX_ROWS, skip_blank=True)
        except DatasetError as exc:
            raise DomainDataError(f"{path}: {exc}") from None
    return parsed.rows


def subsample(examples: list[Example], n: int, *, seed: int) -> list[Example]:
    """Deterministic stratified sample of n examples; each label keeps its share (at least 1)."""
    if n >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_label[ex[1]].append(ex)
    labels = sorted(by_label)
    quotas = {lab: max(1, len(by_label[lab]) * n // len(examples)) for lab in labels}
    # Hand out what rounding left over to the largest classes, then trim any excess the same way.
    for lab in sorted(labels, key=lambda x: -len(by_label[x])):
        if sum(quotas.values()) >= n:
            break
        quotas[lab] += 1
    while sum(quotas.values()) > n:
        lab = max(labels, key=lambda x: quotas[x])
        quotas[lab] -= 1
    picked: list[Example] = []
    for lab in labels:
        group = list(by_label[lab])
        rng.shuffle(group)
        picked.extend(group[: quotas[lab]])
    rng.shuffle(picked)
    return picked


def hold_out(rows: list[Example], *, fraction: float, seed: int, what: str = "the data"
             ) -> tuple[list[Example], list[Example]]:
    """(rest, held out): a deterministic shuffled slice of `fraction` (at least one row).

    The one dev hold-out of the platform: expert training and gating training use it when a
    domain has no dev split, so both see the same rows.
    """
    rows = list(rows)
    if len(rows) < 2:
        raise DomainDataError(f"{what} has too few rows ({len(rows)}) to hold out a dev slice")
    random.Random(seed).shuffle(rows)
    n_dev = max(1, int(len(rows) * fraction))
    return rows[n_dev:], rows[:n_dev]


def load_domain_dir(
    path: str | Path, *, max_train: int | None = None, seed: int = 0,
    eval_file: str | Path | None = None,
) -> DomainData:
    """Read a domain folder; eval_file (e.g. a private test set) replaces test.jsonl if given."""
    folder = Path(path)
    meta_path = folder / "domain.json"
    if not meta_path.is_file():
        raise DomainDataError(f"{meta_path}: not found (a domain folder needs domain.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DomainDataError(f"{meta_path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, list) or len(labels) < 2 or not all(
        isinstance(x, str) and x for x in labels
    ) or len(set(labels)) != len(labels):
        raise DomainDataError(f"{meta_path}: labels must be a list of at least 2 distinct strings")
    name = meta.get("name") or folder.name
    if not isinstance(name, str):
        raise DomainDataError(f"{meta_path}: name must be a string")
    splits: dict[str, list[Example]] = {}
    for split in ("train", "dev"):
        file = folder / f"{split}.jsonl"
        if not file.is_file():
            raise DomainDataError(f"{file}: not found")
        splits[split] = read_jsonl(file, labels)
        if not splits[split]:
            raise DomainDataError(f"{file}: no examples")
    test_file = Path(eval_file) if eval_file is not None else folder / "test.jsonl"
    if eval_file is not None and not test_file.is_file():
        raise DomainDataError(f"{test_file}: not found")
    test = read_jsonl(test_file, labels) if test_file.is_file() else []
    train = splits["train"]
    if max_train is not None:
        train = subsample(train, max_train, seed=seed)
    return DomainData(
        name=name, description=str(meta.get("description", "")), labels=labels,
        train=train, dev=splits["dev"], test=test,
    )
