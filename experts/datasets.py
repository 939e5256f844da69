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


MAX_REPORTED_LINES = 20  # a refusal lists this many bad lines, then counts the rest


class DatasetError(ValueError):
    """An uploaded dataset was refused; the message says which line and why."""


class RowError(DatasetError):
    """One row is wrong; the parse goes on, so a refusal lists every bad row at once."""

    def __init__(self, number: int, problem: str, *, label: str | None = None):
        super().__init__(f"line {number}: {problem}")
        self.number = number
        self.problem = problem
        self.label = label  # an unknown label, so the domain's labels are listed once


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
        raise RowError(number, f"not valid UTF-8 (byte {exc.start + 1} of the line); "
                               "save the file as UTF-8") from None


def _check_row(number: int, text, label, labels: set[str] | None) -> tuple[str, str]:
    if not isinstance(text, str) or not text.strip():
        raise RowError(number, "empty or missing text")
    if len(text) > MAX_TEXT_CHARS:
        raise RowError(number, f"text longer than {MAX_TEXT_CHARS} characters")
    if not isinstance(label, str) or not label.strip():
        raise RowError(number, "empty or missing label")
    label = label.strip()
    if labels is not None and label not in labels:
        raise RowError(number, f"unknown label {label!r}", label=label)
    return text.strip(), label


Row = tuple[str, str] | RowError  # a good row, or what is wrong with that line


def _jsonl_rows(lines: Iterator[tuple[int, bytes]], labels,
                skip_blank: bool = False) -> Iterator[Row]:
    for number, raw in lines:
        try:
            row = _jsonl_row(number, raw, labels, skip_blank)
        except RowError as exc:
            yield exc
            continue
        if row is not None:
            yield row


def _text_line(number: int, raw: bytes, skip_blank: bool) -> str | None:
    """The decoded line; None for a blank one that may be skipped, else a blank is an error."""
    line = _decode(number, raw)
    if not line.strip():
        if skip_blank:
            return None
        raise RowError(number, "empty row")
    return line


def _jsonl_row(number: int, raw: bytes, labels, skip_blank: bool) -> tuple[str, str] | None:
    line = _text_line(number, raw, skip_blank)
    if line is None:
        return None
    try:
        record = safe_json.loads(line, what="the row")
    except json.JSONDecodeError as exc:
        raise RowError(number, f"not valid JSON ({exc.msg})") from None
    except safe_json.JSONRefused as exc:
        raise RowError(number, str(exc)) from None
    if not isinstance(record, dict):
        raise RowError(number, "expected an object with 'text' and 'label'")
    missing = [c for c in ("text", "label") if c not in record]
    if missing:
        raise RowError(number, f"missing column {', '.join(map(repr, missing))}")
    return _check_row(number, record["text"], record["label"], labels)


def _csv_rows(lines: Iterator[tuple[int, bytes]], labels,
              skip_blank: bool = False) -> Iterator[Row]:
    header = None
    for number, raw in lines:
        if header is None:  # a bad header ends the parse: no row can be read without it
            header = [h.strip().lower() for h in next(csv.reader([_decode(number, raw)]))]
            missing = [c for c in ("text", "label") if c not in header]
            if missing:
                raise DatasetError(
                    f"line 1: missing column {', '.join(map(repr, missing))} in the CSV header"
                )
            continue
        try:
            row = _csv_row(number, raw, header, labels, skip_blank)
        except RowError as exc:
            yield exc
            continue
        if row is not None:
            yield row


def _csv_row(number: int, raw: bytes, header: list[str], labels,
             skip_blank: bool) -> tuple[str, str] | None:
    line = _text_line(number, raw, skip_blank)
    if line is None:
        return None
    try:
        values = next(csv.reader(io.StringIO(line)))
    except csv.Error as exc:
        raise RowError(number, f"malformed CSV ({exc})") from None
    if len(values) != len(header):
        raise RowError(number, f"{len(values)} fields, the header has {len(header)} "
                               "(quote texts that contain commas; one row per line)")
    record = dict(zip(header, values, strict=True))
    return _check_row(number, record["text"], record["label"], labels)


def _problems_message(problems: list[RowError], total: int, labels: set[str] | None) -> str:
    """Every bad line (up to MAX_REPORTED_LINES) in one refusal, lines with the same problem
    together, so a contributor fixes the file once instead of once per upload."""
    by_problem: dict[str, list[int]] = {}
    for p in problems:
        by_problem.setdefault(p.problem, []).append(p.number)
    parts = [f"line{'s' if len(ns) > 1 else ''} {', '.join(map(str, ns))}: {problem}"
             for problem, ns in by_problem.items()]
    text = "; ".join(parts)
    if total > len(problems):
        text += f"; and {total - len(problems)} more bad lines"
    if total > 1:
        text = f"{total} lines have problems, fix them all and upload again: {text}"
    if labels is not None and any(p.label is not None for p in problems):
        text += f" (this domain has: {', '.join(sorted(labels))})"
    return text


def parse_dataset(
    chunks: Iterable[bytes], *, filename: str, labels: list[str] | None, max_rows: int,
    skip_blank: bool = False,
) -> ParsedDataset:
    """Parse a JSONL (.jsonl/.json) or CSV (.csv) upload; raises DatasetError naming every bad
    line (up to MAX_REPORTED_LINES).

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
    problems: list[RowError] = []
    bad = 0
    for row in reader(_lines(chunks), known, skip_blank):
        if isinstance(row, RowError):
            bad += 1
            if len(problems) < MAX_REPORTED_LINES:
                problems.append(row)
            continue
        rows.append(row)
        if len(rows) > max_rows:
            raise DatasetError(f"more than {max_rows} rows (the row cap); split the file")
    if problems:
        raise DatasetError(_problems_message(problems, bad, known))
    if not rows:
        raise DatasetError(f"{filename!r} holds no rows")
    return ParsedDataset(rows=rows, label_counts=dict(Counter(y for _, y in rows)))
