"""The one exception type for domain errors; Django-free, so any layer may raise it.

The API's exception handler (moecollab_site.api) and the HTML views turn it into the one error
shape; services raise it and never import the interface layer.
"""
from __future__ import annotations

FORBIDDEN = "forbidden"  # the one error code for "logged in, but not allowed to do this"


class DomainError(Exception):
    """A rule of the platform was broken; carries a message for the user and an HTTP status."""

    def __init__(self, message: str, *, code: str = "invalid", status_code: int = 400):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code


def forbidden(message: str) -> DomainError:
    """The refusal for an action the user's role or ownership does not allow (403)."""
    return DomainError(message, code=FORBIDDEN, status_code=403)
