#!/usr/bin/env bash
# Measures each Lambda function's binary size, cold start, warm latency and peak RSS on this
# machine, and prints them as a markdown table (stdout; progress on stderr):
#   1. starts the local services (infra/services.sh: moto_server for DynamoDB and SQS, Redis,
#      Postgres) where they are not running;
#   2. builds each function's release binary with the workspace profile (lto, codegen-units=1),
#      one package per build as `sam build` does, so no other package's features leak in;
#   3. builds and runs tests/coldstart (meterline-coldstart), which serves the Lambda Runtime
#      API on loopback, starts each binary against it and times it.
# Arguments go to the harness:  bash infra/coldstart.sh [--runs 10] [--warm 5]
#                               [--store dynamodb|postgres] [--only auth,metering]
# With --store postgres the database meterline_coldstart is created if missing (unless
# COLDSTART_POSTGRES_URL names another one).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'coldstart: %s\n' "$*" >&2; }

eval "$(bash infra/services.sh)"

functions=(meterline-auth meterline-orgs meterline-api-keys meterline-metering
  meterline-billing-api meterline-billing)
for package in "${functions[@]}"; do
  log "cargo build --release -p $package"
  cargo build --release -p "$package" >&2
done
log "cargo build --release -p meterline-coldstart"
cargo build --release -p meterline-coldstart >&2

store=dynamodb
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --store) store="${args[$((i + 1))]:-}" ;;
  esac
done
if [ "$store" = postgres ] && [ -z "${COLDSTART_POSTGRES_URL:-}" ]; then
  export PGPASSWORD=postgres
  if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc \
    "select 1 from pg_database where datname = 'meterline_coldstart'" | grep -q 1; then
    log "creating the database meterline_coldstart"
    psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database meterline_coldstart' >&2
  fi
fi

target_dir="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
exec "$target_dir/release/meterline-coldstart" --bin-dir "$target_dir/release" "$@"
