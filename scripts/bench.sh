#!/usr/bin/env bash
# Speed figures of the checklist against warm practice stacks (not a test; run by hand):
#   1. the full checklist's wall time, healthy;
#   2. with every emulated response delayed 50 ms: wall time / 50 ms = round trips on the
#      critical path (target: at most 6);
#   3. against a dead stack, nothing listening (target: under 0.3 s);
#   4. against a hanging Grafana with --timeout 2s (target: at most 2.5 s).
# Usage: bash scripts/bench.sh [RUNS]   (default 5 runs each; uses hyperfine when installed)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
cargo build --release --quiet
BIN=$PWD/target/release/msa-doctor
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Starts `msa-doctor demo --keep-running` with the given faults; prints the env file.
start_stack() {
  local name=$1; shift
  "$BIN" demo --keep-running "$@" >"$work/$name.env" 2>"$work/$name.err" &
  pids+=($!)
  for _ in $(seq 1 600); do
    grep -q '^export KUBECONFIG' "$work/$name.env" 2>/dev/null && grep -q 'serving' "$work/$name.err" && break
    sleep 0.1
  done
  grep -q '^export KUBECONFIG' "$work/$name.env" || { cat "$work/$name.err"; echo "stack $name did not start" >&2; exit 1; }
  echo "$work/$name.env"
}

# Mean wall time in seconds of a command over RUNS runs (after one warm-up run).
time_it() {
  "$@" >/dev/null 2>&1 || true
  local total=0 t0 t1
  for _ in $(seq 1 "$RUNS"); do
    t0=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; t1=$(date +%s.%N)
    total=$(echo "$total + $t1 - $t0" | bc -l)
  done
  echo "scale=3; $total / $RUNS" | bc -l
}

run_check() { ( set -a; source "$1"; set +a; shift; exec "$BIN" check --color never "$@" ); }

healthy=$(start_stack healthy)
slow=$(start_stack slow --fault latency-50ms)
hang=$(start_stack hang --fault grafana-hangs)

t_healthy=$(time_it run_check "$healthy")
t_slow=$(time_it run_check "$slow")
rtts=$(echo "scale=1; $t_slow / 0.050" | bc -l)
t_slow_guide=$(time_it run_check "$slow" --skip grafana.dashboards)
rtts_guide=$(echo "scale=1; $t_slow_guide / 0.050" | bc -l)
t_hang=$(time_it run_check "$hang" --timeout 2s)
dead_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/dead.env" <<EOT
export MSA_DOCTOR_GRAFANA_URL=http://127.0.0.1:$dead_port
export KUBECONFIG=$work/dead-kubeconfig
EOT
cat >"$work/dead-kubeconfig" <<EOT
apiVersion: v1
kind: Config
clusters: [{name: dead, cluster: {server: "http://127.0.0.1:$dead_port"}}]
contexts: [{name: dead, context: {cluster: dead, user: dead}}]
current-context: dead
users: [{name: dead, user: {}}]
EOT
t_dead=$(time_it run_check "$work/dead.env")

printf '\nmsa-doctor %s, %s runs each, %s cores\n' "$("$BIN" --version | cut -d' ' -f2)" "$RUNS" "$(nproc)"
printf '%-44s %8s s\n' "full checklist, healthy stack" "$t_healthy"
printf '%-44s %8s s  (= %s round trips of 50 ms; target <= 6)\n' "full checklist, every response +50 ms" "$t_slow" "$rtts"
printf '%-44s %8s s  (= %s round trips)\n' "  the same without the dashboard scan" "$t_slow_guide" "$rtts_guide"
printf '%-44s %8s s  (target < 0.3)\n' "dead stack (nothing listens)" "$t_dead"
printf '%-44s %8s s  (target <= 2.5)\n' "hanging Grafana, --timeout 2s" "$t_hang"
