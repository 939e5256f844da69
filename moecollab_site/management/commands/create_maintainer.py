"""Create (or update) a maintainer account."""
from __future__ import annotations

import secrets

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from moecollab_site.roles import MAINTAINER, user_add_role


class Command(BaseCommand):
    help = "Create a maintainer (or give an existing user the role) and print its credentials."

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True)
        parser.add_argument("--email", default="")
        parser.add_argument("--password", help="default: a random one, printed once")
        parser.add_argument("--superuser", action="store_true", help="also make it a Django admin")

    def handle(self, *args, username: str, email: str, password: str | None, superuser: bool,
               **options):
        username = username.strip()
        if not username:
            raise CommandError("--username must not be empty")
        password = password or secrets.token_urlsafe(12)
        with transaction.atomic():
            user, created = User.objects.get_or_create(username=username, defaults={"email": email})
            user.set_password(password)
            user.is_staff = user.is_staff or superuser
            user.is_superuser = user.is_superuser or superuser
            if email:
                user.email = email
            user.save()
            user_add_role(user=user, role=MAINTAINER)
        verb = "created" if created else "updated"
        self.stdout.write(f"Maintainer {verb}: username={username} password={password}")
