#!/usr/bin/env bash
# The README's second command: install the test dependencies, make sure PostgreSQL, Redis and
# chromium are there, and run pytest against the real services. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
bash scripts/ensure-services.sh
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/edumlops}"
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/13}"
export EDUMLOPS_VAR_DIR="${EDUMLOPS_VAR_DIR:-$PWD/var/test}"
unset CELERY_BROKER_URL CELERY_RESULT_BACKEND DJANGO_ENV
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache  # the layers of ARCHITECTURE.md §4 ([tool.importlinter])
exec .venv/bin/python -m pytest "$@"
