from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SiteConfig(AppConfig):
    name = "moecollab_site"
    verbose_name = "MoECollab site"

    def ready(self) -> None:
        from moecollab_site.roles import ensure_roles_after_migrate

        # Permissions exist only after every app migrated, so roles are set up then.
        post_migrate.connect(ensure_roles_after_migrate, dispatch_uid="moecollab-roles")
