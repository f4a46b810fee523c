#!/usr/bin/env bash
# Lints the SAM template: `cfn-lint template.yaml` and `sam validate --lint`, failing on any
# finding (errors and warnings alike). Installs both from PyPI when missing, into a virtualenv of
# their own (METERLINE_TOOLS_DIR, default ~/.cache/meterline/tools) so their pinned
# dependencies never disturb the Python packages the test services use (moto, awscli).
# Needs no AWS credentials; the region only tells the linters which resource specs to use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools="${METERLINE_TOOLS_DIR:-$HOME/.cache/meterline/tools}"
# Pinned, so a new linter release cannot fail CI on an unchanged template. Bump both together
# (aws-sam-cli bounds the cfn-lint it works with) and run this script.
cfn_lint_version=1.58.0
sam_cli_version=1.170.0
log() { printf 'lint: %s\n' "$*" >&2; }

installed() {
  local shown
  shown="$("$tools/bin/python" -m pip show "$1" 2>/dev/null)" || return 1
  grep -qx "Version: $2" <<<"$shown"
}
if ! installed cfn-lint "$cfn_lint_version" || ! installed aws-sam-cli "$sam_cli_version"; then
  log "installing cfn-lint $cfn_lint_version and aws-sam-cli $sam_cli_version into $tools"
  [ -x "$tools/bin/python" ] || python3 -m venv "$tools" >&2
  "$tools/bin/python" -m pip install -q --upgrade pip >&2
  "$tools/bin/python" -m pip install -q "cfn-lint==$cfn_lint_version" "aws-sam-cli==$sam_cli_version" >&2
fi

export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export SAM_CLI_TELEMETRY=0

echo "== cfn-lint template.yaml ($("$tools/bin/cfn-lint" --version))"
"$tools/bin/cfn-lint" template.yaml

echo "== sam validate --lint ($("$tools/bin/sam" --version))"
"$tools/bin/sam" validate --lint --template template.yaml --region "$AWS_DEFAULT_REGION"
