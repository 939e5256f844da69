"""Import domain folders laid out like shared/data (domain.json, train/dev/test.jsonl)."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from experts.services import domain_import_folder
from moecollab_site.errors import DomainError


class Command(BaseCommand):
    help = "Create or update domains from DIR/<domain>/domain.json and its JSONL splits."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="a domain folder or a folder of them")
        parser.add_argument("--public-test", action="store_true",
                            help="make test splits public (default: private)")

    def handle(self, *args, path: Path, public_test: bool, **options):
        if not path.is_dir():
            raise CommandError(f"{path} is not a folder")
        folders = [path] if (path / "domain.json").exists() else sorted(
            p for p in path.iterdir() if (p / "domain.json").exists())
        if not folders:
            raise CommandError(f"no domain.json in {path} or its subfolders")
        for folder in folders:
            try:
                domain = domain_import_folder(path=folder, private_test=not public_test)
            except DomainError as exc:
                raise CommandError(exc.message) from None
            splits = ", ".join(f"{s.kind} {s.n_rows}" + (" (private)" if s.is_private else "")
                               for s in domain.splits.all())
            self.stdout.write(f"{domain.name}: {len(domain.labels)} labels; {splits}")
