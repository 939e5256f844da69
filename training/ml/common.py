"""Shared pieces of the training loops."""
from __future__ import annotations


class TrainingStopped(Exception):
    """Raised inside a training loop when should_stop() returns True (a cancelled job)."""
