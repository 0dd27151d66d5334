#!/usr/bin/env bash
# `make bench`: the bench extra (Evidently, py-spy), Debian's wrk for the HTTP benchmarks,
# PostgreSQL and Redis answering, then every bench/bench_*.py in turn.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test,bench
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian package: wrk"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
  else
    echo "bench: wrk is missing: install it (apt-get install wrk) and run make bench again" >&2
    exit 1
  fi
fi
bash scripts/ensure-services.sh
exec .venv/bin/python bench/run_all.py "$@"
