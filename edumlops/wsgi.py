"""WSGI entry point (gunicorn edumlops.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edumlops.settings")

application = get_wsgi_application()
