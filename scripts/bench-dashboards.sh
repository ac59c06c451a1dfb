#!/usr/bin/env bash
# Speed of the dashboard scan (`msa-doctor explain --all-dashboards`) against warm practice
# stacks. Not a test; run by hand. Target: a 30-panel dashboard in under 3 s.
#
# Two stacks: a healthy one (everything on loopback, answers in a few ms) and one with the
# latency-50ms fault (every Grafana response 50 ms late, like a port-forward to a remote
# cluster). For each, over RUNS runs (hyperfine when installed, else a `date +%s.%N` loop):
#   1. the connection alone (the checks up to grafana.datasource), which every scan pays once;
#   2. `explain --all-dashboards`, and `explain --dashboard UID` for each built-in dashboard:
#      its panel queries, the wall time per panel query, and the scan's own duration_ms;
#   3. a 30-panel dashboard built here from the samples' Prometheus panels (the guide's four
#      and the Spring Boot sample's nine, cycled). The Grafana emulator provisions its
#      dashboards at start and has no POST /api/dashboards/db, so the stack cannot import one
#      at run time: a small loopback proxy in front of it adds the dashboard to /api/search
#      and /api/dashboards/uid/bench-30 and passes every other request through. Its own cost
#      shows in the same Spring Boot scan through it; the linear extrapolation from the
#      Spring Boot sample's per-query cost is printed too.
#
# Usage: bash scripts/bench-dashboards.sh [RUNS]   (default 5; needs python3 and Prometheus)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
cargo build --release --quiet
BIN=$PWD/target/release/msa-doctor
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Mean and min wall time in seconds of a command over RUNS runs (after one warm-up run).
time_it() {
  if command -v hyperfine >/dev/null 2>&1; then
    hyperfine --warmup 1 --runs "$RUNS" --ignore-failure --export-json "$work/h.json" --style none \
      "$(printf '%q ' "$@")" >/dev/null 2>&1
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.3f %.3f" % (r["mean"], r["min"]))' "$work/h.json"
    return
  fi
  "$@" >/dev/null 2>&1 || true
  local times=() t0 t1
  for _ in $(seq 1 "$RUNS"); do
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || true
    t1=$(date +%s.%N)
    times+=("$(echo "$t1 - $t0" | bc -l)")
  done
  printf '%s\n' "${times[@]}" | awk '{s+=$1; if (NR==1||$1<m) m=$1} END {printf "%.3f %.3f\n", s/NR, m}'
}

explain() { "$BIN" explain --no-kube --color never "$@"; }
per() { awk -v t="$1" -v n="$2" 'BEGIN {printf "%.3f", t/n}'; }

# One line per dashboard: uid, panel queries, queries that reached Prometheus, queries
# without data, the scan's duration_ms (all dashboards of the run), title.
census() {
  explain "$@" --output json >"$work/scan.json" 2>/dev/null || true
  python3 - "$work/scan.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for r in d["dashboards"]:
    ps = r["panels"]
    prom = [p for p in ps if p["status"] in ("data", "zero", "empty", "error")]
    empty = [p for p in ps if p["status"] != "data"]
    print(r["uid"], len(ps), len(prom), len(empty), d["duration_ms"], r["title"].replace(" ", "_"))
EOF
}

# The 30-panel dashboard, from the samples' Prometheus panels.
python3 - "$work/bench-30.json" <<'EOF'
import json, sys
base = "src/sandbox/dashboards/"
guide = json.load(open(base + "msa-monitoring.json"))
spring = json.load(open(base + "spring-boot-observability.json"))
prom = guide["panels"] + [p for p in spring["panels"] if p.get("datasource", {}).get("type") == "prometheus"]
panels = []
for i in range(30):
    p = json.loads(json.dumps(prom[i % len(prom)]))
    p["id"] = 1000 + i
    p["title"] = "%s #%d" % (p.get("title", "panel"), i + 1)
    p["gridPos"] = {"h": 8, "w": 8, "x": (i % 3) * 8, "y": (i // 3) * 8}
    panels.append(p)
model = {
    "uid": "bench-30", "title": "Bench 30 panels", "schemaVersion": 39, "version": 1,
    "time": {"from": "now-15m", "to": "now"}, "templating": spring["templating"], "panels": panels,
}
json.dump({"dashboard": model, "meta": {"slug": "bench-30", "provisioned": False}}, open(sys.argv[1], "w"))
EOF

# The loopback proxy that adds bench-30 to a Grafana's dashboards. One write per answer and
# TCP_NODELAY, or Nagle's algorithm and delayed ACKs add 40 ms to every request.
cat >"$work/proxy.py" <<'EOF'
import http.client, json, socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit
up = urlsplit(sys.argv[1]); extra = json.dumps(json.load(open(sys.argv[2]))).encode()
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def log_message(self, *a): pass
    def send(self, status, headers, body):
        head = ["HTTP/1.1 %d %s" % (status, http.client.responses.get(status, ""))]
        head += ["%s: %s" % (k, v) for k, v in headers if k.lower() not in HOP]
        head += ["Content-Length: %d" % len(body), "", ""]
        self.wfile.write("\r\n".join(head).encode("latin-1") + body)
        self.wfile.flush()
    def relay(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        c = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        c.request(self.command, self.path, body, {k: v for k, v in self.headers.items() if k.lower() not in HOP})
        r = c.getresponse(); data = r.read(); c.close()
        return r.status, r.getheaders(), data
    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/api/dashboards/uid/bench-30":
            status, headers, data = self.relay()  # authenticates like any other call
            if status in (200, 404):
                status, headers, data = 200, [("Content-Type", "application/json")], extra
            self.send(status, headers, data); return
        status, headers, data = self.relay()
        if path == "/api/search" and status == 200:
            hits = json.loads(data)
            hits.append({"id": 1000, "uid": "bench-30", "title": "Bench 30 panels", "type": "dash-db", "url": "/d/bench-30/bench-30"})
            data = json.dumps(hits).encode()
        self.send(status, headers, data)
    def do_POST(self):
        self.send(*self.relay())
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF

# Starts `msa-doctor demo --keep-running` with the given faults and waits until it serves;
# its stdout is the `export` lines (src/sandbox/demo.rs), written once the data is warm.
start_stack() {
  local name=$1
  shift
  "$BIN" demo --keep-running "$@" >"$work/$name.env" 2>"$work/$name.err" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 900); do
    grep -q 'serving' "$work/$name.err" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '^export MSA_DOCTOR_GRAFANA_URL' "$work/$name.env" || {
    cat "$work/$name.err" >&2
    echo "the practice stack $name did not start" >&2
    exit 1
  }
}

W=52
row() { printf "%-${W}s %7s %7s %7s %9s %9s\n" "$@"; }
note() { printf "%-${W}s %s\n" "" "$*"; }

# Measures one stack (its env file sourced in a subshell).
measure() {
  local name=$1 label=$2
  (
    set -a
    # shellcheck disable=SC1090
    source "$work/$name.env"
    set +a
    python3 "$work/proxy.py" "$MSA_DOCTOR_GRAFANA_URL" "$work/bench-30.json" >"$work/$name.port" &
    proxy_pid=$!
    trap 'kill "$proxy_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do [ -s "$work/$name.port" ] && break; sleep 0.1; done
    local proxy_url n prom empty ms title uid mean min connect_mean spring_mean="" spring_n=""
    proxy_url="http://127.0.0.1:$(cat "$work/$name.port")"

    printf '\n%s\n' "$label"
    row "" "mean s" "min s" "queries" "s/query" "scan ms"
    read -r connect_mean min <<<"$(time_it "$BIN" check --only grafana.datasource --no-kube --color never)"
    row "connect (checks up to grafana.datasource)" "$connect_mean" "$min"
    census --all-dashboards >"$work/$name.census"
    read -r mean min <<<"$(time_it explain --all-dashboards)"
    n=$(awk '{s+=$2} END {print s}' "$work/$name.census")
    row "explain --all-dashboards" "$mean" "$min" "$n" "$(per "$mean" "$n")" "$(awk 'NR==1 {print $5}' "$work/$name.census")"
    while read -r uid _; do
      read -r _ n prom empty ms title <<<"$(census --dashboard "$uid")"
      read -r mean min <<<"$(time_it explain --dashboard "$uid")"
      row "--dashboard $uid (${title//_/ })" "$mean" "$min" "$n" "$(per "$mean" "$n")" "$ms"
      note "$prom of the $n queries reach Prometheus, $empty without data"
      if [ "$uid" = dLsDQIUnzb ]; then spring_mean=$mean spring_n=$n; fi
    done <"$work/$name.census"

    export MSA_DOCTOR_GRAFANA_URL=$proxy_url
    read -r mean min <<<"$(time_it explain --dashboard dLsDQIUnzb)"
    row "--dashboard dLsDQIUnzb, through the proxy" "$mean" "$min"
    read -r uid n prom empty ms title <<<"$(census --dashboard bench-30)"
    read -r mean min <<<"$(time_it explain --dashboard bench-30)"
    row "--dashboard bench-30 (30 panels), through the proxy" "$mean" "$min" "$n" "$(per "$mean" "$n")" "$ms"
    note "$prom of the $n queries reach Prometheus, $empty without data"
    printf '30-panel dashboard: %s s measured, which %s the 3 s target.\n' "$mean" \
      "$(awk -v t="$mean" 'BEGIN {print (t < 3.0) ? "meets" : "misses"}')"
    if [ -n "$spring_n" ]; then
      local with without
      with=$(per "$spring_mean" "$spring_n")
      without=$(awk -v t="$spring_mean" -v c="$connect_mean" -v n="$spring_n" 'BEGIN {printf "%.3f", (t-c)/n}')
      printf 'Extrapolated from the Spring Boot sample (%s queries in %s s): %s s per query with the\n' "$spring_n" "$spring_mean" "$with"
      printf 'connection, %s s without; 30 queries: %s s, or %s s + 30 x %s = %s s (linear; the scan runs\n' \
        "$without" "$(awk -v p="$with" 'BEGIN {printf "%.2f", 30*p}')" "$connect_mean" "$without" \
        "$(awk -v p="$without" -v c="$connect_mean" 'BEGIN {printf "%.2f", c+30*p}')"
      printf '6 queries at once, so both are upper bounds).\n'
    fi
  )
}

start_stack healthy
start_stack slow --fault latency-50ms
printf 'msa-doctor %s, %s runs each, %s cores (load %s), %s\n' "$("$BIN" --version | cut -d' ' -f2)" "$RUNS" "$(nproc)" \
  "$(cut -d' ' -f1 /proc/loadavg)" "$(command -v hyperfine >/dev/null 2>&1 && echo hyperfine || echo 'date +%s.%N loop')"
measure healthy "healthy stack (loopback, no added latency)"
measure slow "latency-50ms stack (every Grafana response 50 ms late)"
