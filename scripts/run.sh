#!/usr/bin/env bash
# The README's first command: set up, migrate, seed the demo, and run web + worker + beat.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py seed_demo
exec .venv/bin/python manage.py runstack "$@"
