"""One JSON error shape for the whole API: {"error": {"code", "message", "fields"?}}."""
from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class DomainError(Exception):
    """A rule of the platform was broken; carries a message for the user and an HTTP status."""

    def __init__(self, message: str, *, code: str = "invalid", status_code: int = 400):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            msg = _first_message(value)
            return msg if key == "non_field_errors" else f"{key}: {msg}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        body = {"error": {"code": exc.code, "message": exc.message}}
        return Response(body, status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    error: dict = {
        "code": getattr(exc, "default_code", "error"),
        "message": _first_message(detail) if isinstance(exc, ValidationError) else str(
            detail.get("detail", detail) if isinstance(detail, dict) else detail
        ),
    }
    if isinstance(exc, ValidationError) and isinstance(detail, dict):
        error["fields"] = detail
    if response.status_code == status.HTTP_429_TOO_MANY_REQUESTS:
        error["code"] = "throttled"
    response.data = {"error": error}
    return response
