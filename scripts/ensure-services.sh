#!/usr/bin/env bash
# Make sure what the tests need is here: PostgreSQL and Redis answering (started when installed
# but stopped), Debian's chromium for the browser tests and docker-compose for the compose check
# (installed when missing and we are root). Names what is missing otherwise.
set -uo pipefail

pg_host="${PGHOST_TEST:-127.0.0.1}"; pg_port="${PGPORT_TEST:-5432}"
redis_host="${REDIS_HOST_TEST:-127.0.0.1}"; redis_port="${REDIS_PORT_TEST:-6379}"

answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_for() { for _ in $(seq 1 30); do answers "$1" "$2" && return 0; sleep 1; done; return 1; }
missing=()
apt_updated=0
apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; fi
  echo "==> installing Debian package(s): $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! answers "$pg_host" "$pg_port"; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "==> starting PostgreSQL"
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster "$version" main start || true
    done
    wait_for "$pg_host" "$pg_port" || missing+=("PostgreSQL is installed but does not answer on $pg_host:$pg_port (see its log under /var/log/postgresql)")
  else
    missing+=("PostgreSQL on $pg_host:$pg_port: install it (apt-get install postgresql) with trust auth for 127.0.0.1, or point TEST_DATABASE_URL at one")
  fi
fi

if ! answers "$redis_host" "$redis_port"; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "==> starting Redis"
    mkdir -p /tmp/edumlops-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
      --dir /tmp/edumlops-redis --logfile /tmp/edumlops-redis/redis.log >/dev/null
    wait_for "$redis_host" "$redis_port" || missing+=("Redis is installed but does not answer on $redis_host:$redis_port (see /tmp/edumlops-redis/redis.log)")
  else
    missing+=("Redis on $redis_host:$redis_port: install it (apt-get install redis-server), or point TEST_REDIS_URL at one")
  fi
fi

if ! command -v node >/dev/null 2>&1; then
  apt_install nodejs || missing+=("Node.js for the canvas's own tests (tests/js): run 'apt-get install nodejs' as root")
fi
if [ -z "${CHROMIUM_PATH:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium || missing+=("chromium for the browser tests: run 'apt-get install chromium' as root, or set CHROMIUM_PATH")
fi

if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  apt_install docker-compose || missing+=("docker compose (or docker-compose) to check docker-compose.yml: run 'apt-get install docker-compose' as root")
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "edumlops: the tests need what is missing here:" >&2
  for item in "${missing[@]}"; do echo "  - $item" >&2; done
  exit 2
fi
echo "==> PostgreSQL ($pg_host:$pg_port), Redis ($redis_host:$redis_port), chromium and Node.js are ready"
