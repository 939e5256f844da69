"""Parsing uploaded datasets (JSONL or CSV with `text` and `label`) into canonical JSONL rows.

Every refusal names the line, so a contributor can fix the file and try again.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from experts.ml import safe_json

MAX_TEXT_CHARS = 20_000
MAX_LINE_BYTES = 256 * 1024


class DatasetError(ValueError):
    """An uploaded dataset was refused; the message says which line and why."""


@dataclass
class ParsedDataset:
    rows: list[tuple[str, str]]
    label_counts: dict[str, int] = field(default_factory=dict)

    def to_jsonl(self) -> bytes:
        lines = (json.dumps({"text": t, "label": y}, ensure_ascii=False) for t, y in self.rows)
        return ("\n".join(lines) + "\n").encode("utf-8")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_jsonl()).hexdigest()


def _lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """Lines of a byte stream, refusing a line longer than MAX_LINE_BYTES before it is built."""
    buf = b""
    number = 0
    for chunk in chunks:
        buf += chunk
        while True:
            cut = buf.find(b"\n")
            if cut < 0:
                if len(buf) > MAX_LINE_BYTES:
                    raise DatasetError(
                        f"line {number + 1}: longer than {MAX_LINE_BYTES // 1024} KiB"
                    )
                break
            number += 1
            line, buf = buf[:cut], buf[cut + 1:]
            if len(line) > MAX_LINE_BYTES:
                raise DatasetError(f"line {number}: longer than {MAX_LINE_BYTES // 1024} KiB")
            yield number, line
    if buf:
        yield number + 1, buf


def _decode(number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"line {number}: not valid UTF-8 (byte {exc.start + 1} of the line); "
            "save the file as UTF-8"
        ) from None


def _check_row(number: int, text, label, labels: set[str] | None) -> tuple[str, str]:
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"line {number}: empty or missing text")
    if len(text) > MAX_TEXT_CHARS:
        raise DatasetError(f"line {number}: text longer than {MAX_TEXT_CHARS} characters")
    if not isinstance(label, str) or not label.strip():
        raise DatasetError(f"line {number}: empty or missing label")
    label = label.strip()
    if labels is not None and label not in labels:
        known = ", ".join(sorted(labels))
        raise DatasetError(f"line {number}: unknown label {label!r} (this domain has: {known})")
    return text.strip(), label


def _jsonl_rows(lines: Iterator[tuple[int, bytes]], labels,
                skip_blank: bool = False) -> Iterator[tuple[str, str]]:
    for number, raw in lines:
        line = _decode(number, raw)
        if not line.strip():
            if skip_blank:
                continue
            raise DatasetError(f"line {number}: empty row")
        try:
            record = safe_json.loads(line, what="the row")
        except json.JSONDecodeError as exc:
            raise DatasetError(f"line {number}: not valid JSON ({exc.msg})") from None
        except safe_json.JSONRefused as exc:
            raise DatasetError(f"line {number}: {exc}") from None
        if not isinstance(record, dict):
            raise DatasetError(f"line {number}: expected an object with 'text' and 'label'")
        missing = [c for c in ("text", "label") if c not in record]
        if missing:
            raise DatasetError(f"line {number}: missing column {', '.join(map(repr, missing))}")
        yield _check_row(number, record["text"], record["label"], labels)


def _csv_rows(lines: Iterator[tuple[int, bytes]], labels,
              skip_blank: bool = False) -> Iterator[tuple[str, str]]:
    header = None
    for number, raw in lines:
        line = _decode(number, raw)
        if header is None:
            header = [h.strip().lower() for h in next(csv.reader([line]))]
            missing = [c for c in ("text", "label") if c not in header]
            if missing:
                raise DatasetError(
                    f"line 1: missing column {', '.join(map(repr, missing))} in the CSV header"
                )
            continue
        if not line.strip():
            if skip_blank:
                continue
            raise DatasetError(f"line {number}: empty row")
        try:
            values = next(csv.reader(io.StringIO(line)))
        except csv.Error as exc:
            raise DatasetError(f"line {number}: malformed CSV ({exc})") from None
        if len(values) != len(header):
            raise DatasetError(
                f"line {number}: {len(values)} fields, the header has {len(header)} "
                "(quote texts that contain commas; one row per line)"
            )
        record = dict(zip(header, values, strict=True))
        yield _check_row(number, record["text"], record["label"], labels)


def parse_dataset(
    chunks: Iterable[bytes], *, filename: str, labels: list[str] | None, max_rows: int,
    skip_blank: bool = False,
) -> ParsedDataset:
    """Parse a JSONL (.jsonl/.json) or CSV (.csv) upload; raises DatasetError naming the line.

    Uploads refuse blank lines (a sign of a broken export); local folders may skip them.
    """
    name = filename.lower()
    if name.endswith((".jsonl", ".json", ".ndjson")):
        reader = _jsonl_rows
    elif name.endswith(".csv"):
        reader = _csv_rows
    else:
        raise DatasetError(f"{filename!r}: expected a .jsonl or .csv file")
    known = set(labels) if labels is not None else None
    rows: list[tuple[str, str]] = []
    for row in reader(_lines(chunks), known, skip_blank):
        rows.append(row)
        if len(rows) > max_rows:
            raise DatasetError(f"more than {max_rows} rows (the row cap); split the file")
    if not rows:
        raise DatasetError(f"{filename!r} holds no rows")
    return ParsedDataset(rows=rows, label_counts=dict(Counter(y for _, y in rows)))
