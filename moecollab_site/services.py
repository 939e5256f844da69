"""Writes for accounts: the API token of a user (one per user, DRF's authtoken)."""
from __future__ import annotations

from django.db import transaction
from rest_framework.authtoken.models import Token


def token_revoke(*, user) -> bool:
    """End the user's API token at once; the next log-in to the API issues a new one."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)


def token_rotate(*, user) -> Token:
    """Replace the user's API token (or create the first): the old key stops working."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)
