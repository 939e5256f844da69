from __future__ import annotations

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "training"

    def ready(self) -> None:
        # Its job handlers register with the runner when imported: importing them here
        # gives every process that loads Django (worker, web, commands) the same table.
        from training import handlers  # noqa: F401
