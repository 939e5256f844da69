"""JSON from untrusted bytes, refused up front when valid JSON would still crash a later reader.

Python's json accepts documents that break the code reading them afterwards: nesting deep enough
to raise RecursionError (in the parser, or later in json.dumps, repr or a template), integers
past the int-string conversion limit (a plain ValueError), NaN and 1e999 (a database's JSON
check refuses them), and escaped lone surrogates such as "\\ud800" (not text: the tokenizer, the
database driver and every UTF-8 response fail on them). One reader for manifests, safetensors
headers, dataset lines and API bodies, so each refuses these the same way, naming where.
"""
from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

MAX_DEPTH = 32  # arrays and objects inside each other; every real input needs a handful
_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class JSONRefused(ValueError):
    """Valid JSON (or nearly) that is unsafe to keep; the message says where and why."""


class _NotFinite(Exception):
    def __init__(self, literal: str):
        self.literal = literal


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e999 overflows to inf
        raise _NotFinite(literal)
    return value


def _constant(literal: str) -> float:
    raise _NotFinite(literal)  # NaN, Infinity, -Infinity: not JSON, but json accepts them


def _brief(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{ascii(_brief(key))}]"


def _surrogate_message(where: str, text: str) -> str:
    char = _SURROGATE.search(text).group()
    return (f"{where} holds a lone surrogate ({ascii(char)[1:-1]}), which is not text; "
            "send characters, not halves of a UTF-16 pair")


def check_value(value: Any, *, what: str, path: str = "", max_depth: int = MAX_DEPTH) -> None:
    """Raise JSONRefused if `value` nests deeper than max_depth or holds a lone surrogate.

    Walks with an explicit stack, so a deep value cannot make the check itself recurse.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise JSONRefused(_surrogate_message(where or what, item))
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth >= max_depth:
            raise JSONRefused(f"{what} nests arrays and objects more than {max_depth} levels deep")
        if isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    raise JSONRefused(_surrogate_message(f"a key of {where or what}", key))
                stack.append((child, _child(where, key), depth + 1))
        else:
            stack.extend((child, _child(where, i), depth + 1) for i, child in enumerate(item))


def loads(text: str | bytes, *, what: str, path: str = "", max_depth: int = MAX_DEPTH) -> Any:
    """json.loads for untrusted input: malformed JSON raises json.JSONDecodeError as usual; the
    rest of what would crash a later reader raises JSONRefused naming `what` or the path.

    `path` is how the document's root is named in messages ("" makes a field read `texts[0]`).
    """
    try:
        value = json.loads(text, parse_float=_finite_float, parse_constant=_constant)
    except RecursionError:
        raise JSONRefused(f"{what} nests arrays and objects more than {max_depth} levels "
                          "deep") from None
    except _NotFinite as exc:
        raise JSONRefused(f"{what} holds the number {_brief(exc.literal)}, which is not a "
                          "finite number") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError:  # only an integer over the int-string conversion limit gets here
        raise JSONRefused(f"{what} holds an integer of more than {sys.get_int_max_str_digits()} "
                          "digits") from None
    check_value(value, what=what, path=path, max_depth=max_depth)
    return value
