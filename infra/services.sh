#!/usr/bin/env bash
# Installs (only where missing) and starts (only where not running) the real servers the test
# suite talks to, all on loopback:
#   Redis 127.0.0.1:6379, Postgres 127.0.0.1:5432, moto_server (DynamoDB + SQS) 127.0.0.1:4566.
# Idempotent: run it as often as you like. Progress goes to stderr; stdout is the environment
# to use, so this works:   eval "$(bash infra/services.sh)"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state_dir="${METERLINE_SERVICES_DIR:-$here/../.services}"
mkdir -p "$state_dir"
state_dir="$(cd "$state_dir" && pwd)"

log() { printf 'services: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 120); do
    port_open "$port" && return 0
    sleep 0.5
  done
  log "$name did not start listening on 127.0.0.1:$port"
  return 1
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    as_root apt-get update -qq >&2
    apt_updated=1
  fi
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

start_redis() {
  if port_open 6379; then log "redis: already running"; return; fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "redis: starting"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$state_dir" --logfile "$state_dir/redis.log" >&2
  wait_port 6379 redis
}

postgres_version() { ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1; }

start_postgres() {
  if ! port_open 5432; then
    [ -n "$(postgres_version)" ] || apt_install postgresql
    local version; version="$(postgres_version)"
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -q "^$version main$"; then
      log "postgres: creating cluster $version/main"
      as_root pg_createcluster "$version" main >&2
    fi
    log "postgres: starting $version/main"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
    wait_port 5432 postgres
  else
    log "postgres: already running"
  fi
  # The suite connects as postgres/postgres over TCP; works with trust and password auth alike.
  if ! PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
    log "postgres: setting the postgres user's password"
    as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >&2
  fi
}

start_moto() {
  if port_open 4566; then log "moto_server: already running"; return; fi
  # Pinned: infra/moto_server.py patches moto's DynamoDB transaction rollback (see there).
  if ! python3 -c 'import moto, moto.server, flask; assert moto.__version__ == "5.2.1"' 2>/dev/null; then
    log "installing moto[server] 5.2.1 with pip"
    python3 -m pip install -q 'moto[server]==5.2.1' >&2
  fi
  log "moto_server: starting"
  setsid nohup python3 "$here/moto_server.py" -H 127.0.0.1 -p 4566 >"$state_dir/moto.log" 2>&1 < /dev/null &
  wait_port 4566 moto_server
}

start_redis
start_postgres
start_moto

cat <<ENV
export TEST_POSTGRES_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres
export REDIS_URL=redis://127.0.0.1:6379
export AWS_ENDPOINT_URL=http://127.0.0.1:4566
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
ENV
