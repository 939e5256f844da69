"""Turn a database outage into a clear 503 instead of a 500, and drop the broken connection."""
from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError, connections
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

log = logging.getLogger(__name__)

RETRY_AFTER_S = 10
MESSAGE = "The database is unreachable at the moment; please try again in a few seconds."
# SQLite's lock held past the busy timeout: the database works, other writers keep it busy.
BUSY_MESSAGE = "The database is busy with other writes; please try again in a few seconds."


def _discard_broken_connections() -> None:
    """Close connections that failed, so the next request opens a fresh one."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def _wants_json(request) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path.startswith("/api/") or (
        "application/json" in accept and "text/html" not in accept
    )


class DatabaseUnavailableMiddleware:
    """An OperationalError/InterfaceError from a view becomes 503 (JSON under /api/, else HTML).

    Such errors mean the database cannot be reached (down, restarting, network cut), which is a
    temporary outage, not a bug. The page is rendered without a request context: the context
    processors would query the database again.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        detail = str(exception).strip().splitlines()[0][:300] if str(exception).strip() else ""
        log.error("database unavailable during %s %s: %s", request.method, request.path,
                  detail or type(exception).__name__)
        _discard_broken_connections()
        busy = "database is locked" in detail
        code, message = ("database_busy", BUSY_MESSAGE) if busy else (
            "database_unavailable", MESSAGE)
        if _wants_json(request):
            body = {"error": {"code": code, "message": message}}
            response = JsonResponse(body, status=503)
        else:
            response = HttpResponse(render_to_string("503.html", {"message": message}),
                                    status=503)
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response


class RejectNulMiddleware:
    """A NUL character in the path or query string is refused with 400 before any view runs.

    No identifier or filter of the platform can contain one, and PostgreSQL cannot even compare
    text with it (the driver raises instead of matching nothing).
    """

    MESSAGE = "the URL contains a NUL character (%00), which no parameter may contain"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in v for v in values)
            for key, values in request.GET.lists()
        ):
            if _wants_json(request):
                return JsonResponse({"error": {"code": "invalid", "message": self.MESSAGE}},
                                    status=400)
            return HttpResponse(self.MESSAGE, status=400, content_type="text/plain")
        return self.get_response(request)
