"""How every command reports: text for people, or one JSON object on stdout with --json.

Errors are one line on stderr ("error: ..."), plus {"error": {"code", "message"}} on stdout with
--json (the API's own error shape), and a non-zero exit code: 1 when something failed or was
refused, 2 for a wrong command line (click's own).
"""
from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click
from tqdm import tqdm

from moecollab_cli.client import ApiError
from moecollab_cli.config import ConfigError

EXIT_FAILED = 1


class CliError(Exception):
    """A command cannot do what was asked; the message says what to fix."""

    def __init__(self, message: str, *, code: str = "failed") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Output:
    """Where a command writes: progress and notes for people, the result for people or scripts."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def say(self, text: str = "") -> None:
        """A line for the person running the command (stderr under --json, so stdout stays
        one JSON document)."""
        click.echo(text, err=self.as_json)

    def result(self, obj: dict, human: Callable[[], None] | None = None) -> None:
        if self.as_json:
            click.echo(json.dumps(obj, indent=2, ensure_ascii=False))
        elif human is not None:
            human()

    def fail(self, code: str, message: str, *, extra: dict | None = None) -> None:
        if self.as_json:
            click.echo(json.dumps({"error": {"code": code, "message": message}, **(extra or {})},
                                  indent=2, ensure_ascii=False))
        click.echo(f"error: {message}", err=True)
        sys.exit(EXIT_FAILED)

    def exit_failed(self, message: str) -> None:
        """End a command whose result is already printed (the result says what failed)."""
        click.echo(f"error: {message}", err=True)
        sys.exit(EXIT_FAILED)

    def bar(self, total: float | None, desc: str, *, unit: str = "it") -> tqdm:
        """A progress bar on stderr; bytes are shown in KiB/MiB."""
        scale = unit == "B"
        return tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, unit_divisor=1024,
                    file=sys.stderr, dynamic_ncols=True, leave=True)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add --json to a command and turn its failures into the error report above."""

    @click.option("--json", "as_json", is_flag=True,
                  help="Print the result as one JSON object on stdout (for scripts).")
    @functools.wraps(fn)
    def wrapper(*args: Any, as_json: bool, **kwargs: Any) -> Any:
        out = Output(as_json)
        try:
            return fn(*args, ui=out, **kwargs)
        except CliError as exc:
            out.fail(exc.code, exc.message)
        except ApiError as exc:
            out.fail(exc.code, exc.message, extra={"status": exc.status})
        except ConfigError as exc:
            out.fail("config", str(exc))

    return wrapper


def check_line(check: dict) -> str:
    mark = "✓" if check["ok"] else "✗"
    where = f" [{check['where']}]" if check.get("where") else ""
    return f"{mark} {check['name']}{where}: {check['message']}"
