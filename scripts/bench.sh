#!/usr/bin/env bash
# Speed figures of the checklist against warm practice stacks (not a test; run by hand):
#   1. the full checklist's wall time, healthy;
#   2. with every emulated response delayed 50 ms: wall time / 50 ms = round trips on the
#      critical path (target: at most 6);
#   3. against a dead stack, nothing listening (target: under 0.3 s);
#   4. against a hanging Grafana with --timeout 2s (target: at most 2.5 s);
#   5. requests per run to Grafana and to the Kubernetes API, healthy (targets: at most 20 to
#      Grafana without the dashboard scan, at most 30 with it);
#   6. peak memory (RSS) of a healthy run and of a run against a server whose every answer is a
#      100 MB body.
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

# Requests per run, as the transport counts them (MSA_DOCTOR_REQUEST_COUNTS).
count_requests() {
  ( set -a; source "$1"; set +a; shift; MSA_DOCTOR_REQUEST_COUNTS=1 "$BIN" check --color never "$@" 2>&1 >/dev/null | grep '^requests:' )
}
grafana_hostport() { ( set -a; source "$1"; set +a; echo "${MSA_DOCTOR_GRAFANA_URL#http://}" ); }
req_of() { tr ' ' '\n' | grep "^$1=" | cut -d= -f2 | head -1; }
g_hp=$(grafana_hostport "$healthy")
req_all=$(count_requests "$healthy")
req_guide=$(count_requests "$healthy" --skip grafana.dashboards)
g_all=$(echo "$req_all" | req_of "$g_hp"); k_all=$(echo "$req_all" | req_of kubernetes)
g_guide=$(echo "$req_guide" | req_of "$g_hp"); k_guide=$(echo "$req_guide" | req_of kubernetes)

# Peak RSS (KiB) of one run of a command.
peak_rss() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
}
rss_healthy=$( ( set -a; source "$healthy"; set +a; peak_rss "$BIN" check --color never ) )
# A server whose every answer is 100 MB.
huge_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$huge_port" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        chunk = b" " * (1 << 20)
        try:
            self.wfile.write(b'{"database":"ok","x":"')
            for _ in range(100): self.wfile.write(chunk)
        except Exception: pass
    do_POST = do_GET
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
pids+=($!)
sleep 0.5
rss_huge=$(peak_rss "$BIN" check --color never --no-kube --grafana-url "http://127.0.0.1:$huge_port")

printf '\nmsa-doctor %s, %s runs each, %s cores\n' "$("$BIN" --version | cut -d' ' -f2)" "$RUNS" "$(nproc)"
printf '%-44s %8s s\n' "full checklist, healthy stack" "$t_healthy"
printf '%-44s %8s s  (= %s round trips of 50 ms; target <= 6)\n' "full checklist, every response +50 ms" "$t_slow" "$rtts"
printf '%-44s %8s s  (= %s round trips)\n' "  the same without the dashboard scan" "$t_slow_guide" "$rtts_guide"
printf '%-44s %8s s  (target < 0.3)\n' "dead stack (nothing listens)" "$t_dead"
printf '%-44s %8s s  (target <= 2.5)\n' "hanging Grafana, --timeout 2s" "$t_hang"
printf '%-44s %8s    (target <= 20)\n' "requests to Grafana, without the scan" "$g_guide"
printf '%-44s %8s    (target <= 30)\n' "requests to Grafana, full checklist" "$g_all"
printf '%-44s %8s\n' "requests to the Kubernetes API" "$k_all"
printf '%-44s %8s MiB\n' "peak RSS, healthy run" "$((rss_healthy / 1024))"
printf '%-44s %8s MiB (budget 256 MiB for answers)\n' "peak RSS, every answer 100 MB" "$((rss_huge / 1024))"
