"""WSGI entry point (gunicorn edumlops.wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edumlops.settings")

application = get_wsgi_application()

# Everything loaded so far (Django, the apps, numpy, onnxruntime's bindings) lives as long as the
# process: move it out of the cyclic collector's reach, so the collections that a busy predict
# request triggers walk only the request's own objects (about a third of a 100-row request's
# time otherwise). After a fork the workers share these pages instead of copying them.
gc.collect()
gc.freeze()
