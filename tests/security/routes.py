"""The site's routes, read from the URL conf, so a new route shows up in the security tests."""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

WRITE_METHODS = ("post", "put", "patch", "delete")


@dataclass(frozen=True)
class Route:
    pattern: str  # e.g. "api/v1/experts/<int:pk>/"
    name: str | None
    callback: object

    @property
    def is_api(self) -> bool:
        return self.pattern.startswith("api/")

    @property
    def is_admin(self) -> bool:
        return self.pattern.startswith("admin/")


def all_routes() -> list[Route]:
    def walk(patterns, prefix: str):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield Route(prefix + str(p.pattern), p.name, p.callback)

    return list(walk(get_resolver().url_patterns, ""))


def api_write_endpoints() -> list[str]:
    """'METHOD pattern' for every write method of every view under /api/v1/."""
    out = []
    for route in all_routes():
        cls = getattr(route.callback, "cls", None)
        if not route.pattern.startswith("api/v1/") or cls is None:
            continue
        out += [f"{m.upper()} {route.pattern}" for m in WRITE_METHODS if hasattr(cls, m)]
    return sorted(out)


def accepts_post(route: Route) -> bool:
    """Whether an HTML view does something with a POST (class views: a post method; function
    views: their source reads request.POST or checks for the POST method)."""
    view_class = getattr(route.callback, "view_class", None)
    if view_class is not None:
        return hasattr(view_class, "post")
    return "POST" in inspect.getsource(inspect.unwrap(route.callback))


def html_routes() -> list[Route]:
    return [r for r in all_routes() if not r.is_api and not r.is_admin]


def html_write_routes() -> list[str]:
    return sorted(r.pattern for r in html_routes() if accepts_post(r))


def fill(pattern: str, values: dict) -> str:
    """A concrete path for a route pattern: '<int:pk>' -> values['pk'] and so on."""
    import re

    def sub(match):
        return str(values[match.group(2)])

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", sub, pattern)
