#!/usr/bin/env bash
# Contract fuzzing: schemathesis against the local server's own /openapi.json, every operation,
# with stateful links (signup -> login, org -> keys/members/billing, plan -> edit/archive).
# Fails on any 5xx, any response that breaks its schema, any undocumented status code, content
# type or header. schemathesis is pinned and lives in a virtualenv of its own
# (METERLINE_CONTRACT_DIR, default ~/.cache/meterline/contract).
#
#   bash infra/contract.sh                 # CI budget
#   CONTRACT_MAX_EXAMPLES=200 bash infra/contract.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools="${METERLINE_CONTRACT_DIR:-$HOME/.cache/meterline/contract}"
schemathesis_version=4.32.5
log() { printf 'contract: %s\n' "$*" >&2; }

shown="$("$tools/bin/python" -m pip show schemathesis 2>/dev/null || true)"
if ! grep -qx "Version: $schemathesis_version" <<<"$shown"; then
  log "installing schemathesis $schemathesis_version into $tools"
  [ -x "$tools/bin/python" ] || python3 -m venv "$tools" >&2
  "$tools/bin/python" -m pip install -q --upgrade pip >&2
  "$tools/bin/python" -m pip install -q "schemathesis==$schemathesis_version" >&2
fi

cargo build -q -p meterline-local
bin="$(cargo metadata --format-version 1 --no-deps | "$tools/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/meterline"

work="$(mktemp -d)"
port="$("$tools/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
export CONTRACT_BASE_URL="$base" CONTRACT_EMAIL="admin@contract.test" CONTRACT_PASSWORD="contract-password-1"

# The local server on its embedded store, with every feature switched on: platform admin (plan
# routes), a webhook secret (the signature path), no per-IP auth throttle (it would answer most
# of the run with a documented but uninformative 429).
env STORE_URL="sqlite://$work/contract.db" MAIL_OUTBOX_DIR="$work/outbox" PORT="$port" AUTH_IP_LIMIT_PER_MIN=0 \
    LOGIN_MAX_FAILURES=1000 PLATFORM_ADMIN_EMAILS="$CONTRACT_EMAIL" \
    STRIPE_WEBHOOK_SECRET="whsec_contract_$(date +%s)" RUST_LOG=warn \
    "$bin" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 300); do
  curl -fs "$base/health" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { cat "$work/server.log" >&2; log "the server exited"; exit 1; }
  sleep 0.1
done

json() { "$tools/bin/python" -c "import json,sys; print(json.load(sys.stdin)$1)"; }
post() { curl -fsS "$base$1" -H 'content-type: application/json' ${3:+-H "authorization: Bearer $3"} -d "$2"; }
post /v1/auth/signup "{\"email\":\"$CONTRACT_EMAIL\",\"password\":\"$CONTRACT_PASSWORD\"}" >/dev/null
token="$(post /v1/auth/login "{\"email\":\"$CONTRACT_EMAIL\",\"password\":\"$CONTRACT_PASSWORD\"}" | json '["access_token"]')"
org="$(post /v1/orgs '{"name":"contract"}' "$token" | json '["id"]')"
export CONTRACT_API_KEY="$(post "/v1/orgs/$org/api-keys" '{"name":"contract"}' "$token" | json '["key"]')"

log "schemathesis $schemathesis_version against $base/openapi.json"
SCHEMATHESIS_HOOKS=hooks PYTHONPATH=infra/contract "$tools/bin/schemathesis" run "$base/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "${CONTRACT_MAX_EXAMPLES:-40}" \
  --seed "${CONTRACT_SEED:-20261129}" \
  --workers 1 \
  --report junit --report-dir "${CONTRACT_REPORT_DIR:-$work/report}" \
  "$@"
