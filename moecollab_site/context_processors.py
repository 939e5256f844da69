from __future__ import annotations

from moecollab_site.roles import is_maintainer


def roles(request) -> dict:
    return {"is_maintainer": is_maintainer(request.user)}
