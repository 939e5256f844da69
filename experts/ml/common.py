"""Pieces every layer of the ML core shares: progress and stop callbacks, atomic file writes."""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

ProgressFn = Callable[[float, float, str], None]  # (done, total, message)
StopFn = Callable[[], bool]  # True once the caller wants the work to stop


class TrainingStopped(Exception):
    """Raised inside a long computation when should_stop() returns True (a cancelled job)."""


def check_stop(should_stop: StopFn | None, what: str) -> None:
    """Raise TrainingStopped if the caller asked to stop; `what` says where it stopped."""
    if should_stop is not None and should_stop():
        raise TrainingStopped(f"stopped {what}")


def report(on_progress: ProgressFn | None, should_stop: StopFn | None, done: float,
           total: float, message: str) -> None:
    """Honour a stop request, then report progress: one call at each stage boundary."""
    check_stop(should_stop, f"before: {message}")
    if on_progress is not None:
        on_progress(done, total, message)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temp file in the same folder and os.replace.

    Readers see the old file or the whole new one, never a half-written file, and a crash
    leaves at most a `.tmp-*` file that no glob of real files matches.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
