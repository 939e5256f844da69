"""Build the demo installation: four domains, four approved experts, a promoted gating model."""
from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from experts.demo import BUILT, SKIPPED, demo_prepare
from moecollab_site.api import DomainError
from moecollab_site.roles import is_maintainer


class Command(BaseCommand):
    help = ("Build the demo (or say it is built): import four domains, train, upload and approve "
            "one expert each, train, evaluate and promote a gating model. Resumes a half-built "
            "demo; never touches an installation that has experts of its own.")
    # Like migrate: a data command; the URL checks would import torch for nothing.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--data-dir", type=Path, default=settings.MOECOLLAB_DATA_DIR,
                            help="folder of domain folders like shared/data (default: "
                                 "MOECOLLAB_DATA_DIR, else the bundled sample set)")
        parser.add_argument("--max-train", type=int, default=1500,
                            help="train rows per domain taken from a large data folder")
        parser.add_argument("--maintainer",
                            default=os.environ.get("MOECOLLAB_MAINTAINER", "maintainer"),
                            help="the maintainer who approves the experts and promotes")

    def handle(self, *args, data_dir: Path | None, max_train: int, maintainer: str, **options):
        user = User.objects.filter(username=maintainer).first()
        if user is None or not is_maintainer(user):
            raise CommandError(f"no maintainer named {maintainer!r}; create one with `python "
                               f"manage.py create_maintainer --username {maintainer}` (or start "
                               "the platform with `make run`, which does)")
        # Bars need the raw stream: Django's wrapper would add a newline to every redraw.
        stream = self.stdout._out
        try:
            result = demo_prepare(maintainer=user, data_dir=Path(data_dir) if data_dir else None,
                                  max_train=max_train, progress=stream)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        if result.status == SKIPPED:
            self.stdout.write(self.style.WARNING(result.message))
        elif result.status != BUILT:
            self.stdout.write(result.message)
