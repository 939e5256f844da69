"""WSGI entry point (gunicorn moecollab_site.wsgi)."""
from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "moecollab_site.settings.local")
application = get_wsgi_application()
