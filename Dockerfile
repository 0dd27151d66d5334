# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    DJANGO_ENV=production EDUMLOPS_VAR_DIR=/var/lib/edumlops

WORKDIR /app
COPY pyproject.toml README.md ./
COPY edumlops ./edumlops
COPY workflows ./workflows
RUN pip install .
COPY manage.py ./
COPY templates ./templates
COPY static ./static

# collectstatic needs settings; give it throwaway production values at build time only.
RUN SECRET_KEY=build-only-$(python -c 'import secrets; print(secrets.token_urlsafe(50))') \
    ALLOWED_HOSTS=build python manage.py collectstatic --noinput \
    && useradd --system --home /app edumlops && mkdir -p /var/lib/edumlops \
    && chown -R edumlops /var/lib/edumlops
USER edumlops
EXPOSE 8000
CMD ["sh", "-c", "python manage.py preflight && gunicorn edumlops.wsgi --bind 0.0.0.0:8000 --workers 3 --access-logfile -"]
