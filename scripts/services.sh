#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1 for the test suite,
# starting local servers that are installed but stopped.
#
#   scripts/services.sh          start what is installed, say what is missing
#   scripts/services.sh install  also install them with apt-get (Debian, root)
#
# Without them the tests that need them are skipped with the reason (and fail
# under CI). Other ways to get them:
#   docker compose up -d postgres redis   (then set RISKRANK_TEST_POSTGRES_URL=
#     postgresql+psycopg://riskrank:riskrank@127.0.0.1:5432/riskrank and publish
#     the ports), or your package manager: postgresql, redis-server.
set -u

install=${1:-}

have() { command -v "$1" >/dev/null 2>&1; }

postgres_up() { have pg_isready && pg_isready -q -h 127.0.0.1 -p 5432; }
redis_up() { have redis-cli && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }

if [ "$install" = install ] && { ! have pg_ctlcluster || ! have redis-server; }; then
  if have apt-get && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null
  else
    echo "services: cannot install PostgreSQL and Redis here (needs apt-get as root)" >&2
  fi
fi

if ! postgres_up; then
  if have pg_ctlcluster && [ -d /etc/postgresql ]; then
    for version in /etc/postgresql/*; do
      pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start 2>/dev/null || true
    done
    for _ in $(seq 30); do postgres_up && break; sleep 1; done
  fi
fi

if ! redis_up && have redis-server; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 30); do redis_up && break; sleep 0.5; done
fi

postgres_up && echo "services: PostgreSQL is up on 127.0.0.1:5432" \
  || echo "services: PostgreSQL is not running: its tests will be skipped (see scripts/services.sh)"
redis_up && echo "services: Redis is up on 127.0.0.1:6379" \
  || echo "services: Redis is not running: its tests will be skipped (see scripts/services.sh)"
exit 0
