"""Build the demo installation: four domains, four approved experts, a promoted gating model.

The build itself is moecollab_site.demo; this command is its terminal: one tqdm bar per step,
with what the running job says next to it.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from moecollab_site.demo import BUILT, SKIPPED, DemoProgress, DemoResult, DemoStep, demo_prepare
from moecollab_site.errors import DomainError
from moecollab_site.roles import is_maintainer


class _BarHandler(logging.Handler):
    """Shows what the running job says (its progress messages) next to the current bar."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.bar: tqdm | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.bar is not None:
            _note(self.bar, record.getMessage())


def _note(bar: tqdm, text: str) -> None:
    """What the step is doing now; redrawn at once on a terminal, with the next update in a log."""
    bar.set_postfix_str(text[:60], refresh=bar.interactive)


@contextlib.contextmanager
def _terminal(handler: _BarHandler) -> Iterator[None]:
    """While bars are drawn, job chatter goes to the bars instead of the console log."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its weight-loading bars would break ours
    root = logging.getLogger()
    saved = [(h, h.level) for h in root.handlers]
    for h, level in saved:
        h.setLevel(max(level, logging.WARNING))
    runner = logging.getLogger("training.runner")
    runner.addHandler(handler)
    try:
        yield
    finally:
        runner.removeHandler(handler)
        hf_logging.enable_progress_bar()
        for h, level in saved:
            h.setLevel(level)


class _BarStep(DemoStep):
    def __init__(self, bar: tqdm) -> None:
        self.bar = bar

    def advance(self, n: int = 1) -> None:
        self.bar.update(n)

    def note(self, text: str) -> None:
        _note(self.bar, text)


class TerminalProgress(DemoProgress):
    """The demo's steps as tqdm bars on `out` (redrawn in place on a terminal, else logged)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.interactive = getattr(out, "isatty", lambda: False)()
        self.handler = _BarHandler()

    @contextlib.contextmanager
    def building(self, message: str) -> Iterator[None]:
        self.out.write(message + "\n")
        self.out.flush()
        with _terminal(self.handler):
            yield

    @contextlib.contextmanager
    def step(self, desc: str, *, total: int) -> Iterator[DemoStep]:
        bar = tqdm(total=total, desc=desc, file=self.out, leave=True,
                   mininterval=0.2 if self.interactive else 10.0,
                   dynamic_ncols=self.interactive,
                   bar_format="{desc:<20} {percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt} "
                              "[{elapsed}]{postfix}")
        bar.interactive = self.interactive
        self.handler.bar = bar
        try:
            with bar:
                yield _BarStep(bar)
        finally:
            self.handler.bar = None


def demo_summary(result: DemoResult) -> str:
    """The demo's numbers in a few lines for the terminal."""
    if result.gating_version_id is None:
        return result.message
    lines = [result.message]
    if result.accuracy is not None:
        lines.append(f"  summary test accuracy {result.accuracy:.3f}, expert utilisation "
                     f"{result.utilization:.3f}")
    experts = ", ".join(f"{name} {acc:.2f}" for name, acc in sorted(result.experts.items())
                        if acc is not None)
    if experts:
        lines.append(f"  expert test accuracy: {experts}")
    return "\n".join(lines)


class Command(BaseCommand):
    help = ("Build the demo (or say it is built): import four domains, train, upload and approve "
            "one expert each, train, evaluate and promote a gating model. Resumes a half-built "
            "demo; never touches an installation that has experts of its own.")
    # Like migrate: a data command; the URL checks would import torch for nothing.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--data-dir", type=Path, default=settings.MOECOLLAB_DATA_DIR,
                            help="folder of domain folders like experts/demo_data (default: "
                                 "MOECOLLAB_DATA_DIR, else the bundled sample set)")
        parser.add_argument("--max-train", type=int, default=1500,
                            help="train rows per domain taken from a large data folder")
        parser.add_argument("--maintainer",
                            default=os.environ.get("MOECOLLAB_MAINTAINER", "maintainer"),
                            help="the maintainer who approves the experts and promotes")

    def handle(self, *args, data_dir: Path | None, max_train: int, maintainer: str, **options):
        user = User.objects.filter(username=maintainer).first()
        if user is None or not is_maintainer(user):
            raise CommandError(f"no maintainer named {maintainer!r}; create one with `python "
                               f"manage.py create_maintainer --username {maintainer}` (or start "
                               "the platform with `make run`, which does)")
        # Bars need the raw stream: Django's wrapper would add a newline to every redraw.
        stream = self.stdout._out
        try:
            result = demo_prepare(maintainer=user, data_dir=Path(data_dir) if data_dir else None,
                                  max_train=max_train, progress=TerminalProgress(stream))
        except DomainError as exc:
            raise CommandError(exc.message) from None
        if result.status == BUILT:
            stream.write(demo_summary(result) + "\n")
            stream.flush()
        elif result.status == SKIPPED:
            self.stdout.write(self.style.WARNING(result.message))
        else:
            self.stdout.write(result.message)
