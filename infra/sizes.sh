#!/usr/bin/env bash
# Builds every function template.yaml deploys the way `sam build` does (cargo lambda, release,
# arm64), zipped, and prints each zip's size against the 8 MiB target. Exits 1 if one is over.
# Reuses whatever is already built in the target directory (CARGO_TARGET_DIR, default target/),
# so after a `sam build` with the same CARGO_TARGET_DIR it only zips.
# Needs cargo-lambda: installed from PyPI (with zig) into METERLINE_TOOLS_DIR when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

limit=$((8 * 1024 * 1024))
tools="${METERLINE_TOOLS_DIR:-$HOME/.cache/meterline/tools}"
log() { printf 'sizes: %s\n' "$*" >&2; }

if ! command -v cargo-lambda >/dev/null 2>&1; then
  if [ ! -x "$tools/bin/cargo-lambda" ]; then
    log "installing cargo-lambda (and zig) into $tools"
    python3 -m venv "$tools" >&2
    "$tools/bin/python" -m pip install -q cargo-lambda >&2
  fi
  # The venv first: cargo finds `cargo-lambda`, cargo-lambda finds zig through its python.
  export PATH="$tools/bin:$PATH"
fi
if command -v rustup >/dev/null 2>&1 &&
  ! grep -qx aarch64-unknown-linux-gnu <<<"$(rustup target list --installed)"; then
  log "adding the aarch64-unknown-linux-gnu target"
  rustup target add aarch64-unknown-linux-gnu >&2
fi

# The binaries the template deploys (Metadata.BuildProperties.Binary of each function).
mapfile -t bins < <(sed -n 's/^ *Binary: *\([A-Za-z0-9_-]*\).*/\1/p' template.yaml)
[ "${#bins[@]}" -gt 0 ] || { log "no Binary: entries in template.yaml"; exit 1; }

target_dir="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

# One `--bin` per build, exactly as sam build runs it, so the two share compiled artifacts.
for bin in "${bins[@]}"; do
  log "cargo lambda build --release --arm64 --output-format zip --bin $bin"
  cargo lambda build --release --arm64 --output-format zip --bin "$bin" >&2
done

over=0
printf '%-24s %12s %9s  %s\n' function "zip bytes" MiB "(target < 8 MiB)"
for bin in "${bins[@]}"; do
  zip="$target_dir/lambda/$bin/bootstrap.zip"
  bytes=$(stat -c %s "$zip")
  verdict=ok
  if [ "$bytes" -ge "$limit" ]; then verdict=OVER; over=1; fi
  printf '%-24s %12d %9s  %s\n' "$bin" "$bytes" "$(awk -v b="$bytes" 'BEGIN{printf "%.2f", b/1048576}')" "$verdict"
done
exit "$over"
