#!/usr/bin/env bash
# The whole test suite: starts the real servers it needs (infra/services.sh), then runs every
# test of the workspace. A backend that cannot be reached fails its tests; none is skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(bash infra/services.sh)"
cargo test --workspace "$@"
