#!/usr/bin/env bash
# Runs msa-doctor's main job on the built-in practice stack: installs Debian's Prometheus when
# it is missing, builds, then `msa-doctor demo` with the arguments given (e.g. --fault wrong-path).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
cargo build --release --quiet
exec target/release/msa-doctor demo "$@"
