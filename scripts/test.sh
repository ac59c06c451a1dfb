#!/usr/bin/env bash
# The project's test command (the README names it; CI's .ci/run calls it).
# Installs what the tests need when it is missing, then: format, lints, every test, the
# contract self-check.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v victoria-metrics >/dev/null 2>&1 || need_apt+=(victoria-metrics)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} (Debian packages) for the practice stack"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo build --locked
# Windows laptops: the Unix-only parts must stay behind cfg(unix).
bash scripts/check-windows.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked --no-fail-fast 2>&1 | tee "$log"
if [ -x ../shared/tools/contract-check ]; then
  python3 ../shared/tools/contract-check target/debug/msa-doctor
fi
# One closing line for the whole run: the sum of every test binary's counts.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
