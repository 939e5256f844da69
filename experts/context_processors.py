"""Template context for every page: the signed-in user's unread notification count."""
from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from experts.models import Notification


def notifications(request) -> dict:
    user = request.user
    if not user.is_authenticated:
        return {"unread_notifications": 0}
    # Lazy: pages that never show the count cost no query.
    return {"unread_notifications": SimpleLazyObject(
        lambda: Notification.objects.filter(user=user, read=False).count())}
