"""The one exception type for domain errors; Django-free, so any layer may raise it.

The API's exception handler (moecollab_site.api) and the HTML views turn it into the one error
shape; services raise it and never import the interface layer.
"""
from __future__ import annotations

FORBIDDEN = "forbidden"  # the one error code for "logged in, but not allowed to do this"
DUPLICATE = "duplicate"  # the one error code for "this already exists" (409), with its link


class DomainError(Exception):
    """A rule of the platform was broken; carries a message for the user and an HTTP status.

    `link` is the page of the object the refusal is about (the existing twin of a duplicate),
    for the HTML views to send the user there; the message names it too, for the API.
    """

    def __init__(self, message: str, *, code: str = "invalid", status_code: int = 400,
                 link: str = ""):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.link = link


def forbidden(message: str) -> DomainError:
    """The refusal for an action the user's role or ownership does not allow (403)."""
    return DomainError(message, code=FORBIDDEN, status_code=403)


def duplicate(message: str, *, link: str = "") -> DomainError:
    """The refusal for something identical to what exists (409), naming and linking the twin."""
    return DomainError(message, code=DUPLICATE, status_code=409, link=link)


def reason_of(exc: BaseException) -> str:
    """Why a job stopped, in words for the person who started it: never a Python class name.

    The platform's own refusals (DomainError and the ValueErrors of the checks and engines)
    already say what is wrong; anything else is a fault of the platform, said as such. The
    traceback, kept for maintainers, names the class.
    """
    if isinstance(exc, DomainError):
        return exc.message
    text = str(exc).strip()
    if isinstance(exc, MemoryError):
        return "the worker ran out of memory"
    if "out of memory" in text.lower():  # torch says so in a RuntimeError (CUDA, MPS)
        return f"the worker ran out of memory ({text.splitlines()[0][:200]})"
    if isinstance(exc, KeyError):
        return (f"an unexpected error in the platform: a value it needs ({text or '?'}) is "
                "missing")
    if isinstance(exc, ValueError) and text:
        return text
    if isinstance(exc, OSError):
        return f"a file could not be read or written on the worker ({text or 'no detail'})"
    return (f"an unexpected error in the platform ({text})" if text
            else "an unexpected error in the platform")
