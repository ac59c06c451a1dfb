#!/usr/bin/env bash
# The scale benchmark of issue 8 (not a test; run by hand; figures in docs/benchmarks.md).
#
# For each size N (default 200 and 2000): starts the practice stack with the scale fixture
# (MSA_DOCTOR_SANDBOX_SCALE=N, src/sandbox/scale.rs: N generated Deployments of 5 pods, one of
# them, named on the demo's stderr, scraped at a path that answers 404; 100 dashboards of 20
# panels in the emulated Grafana) behind `msa-doctor demo --keep-running`, then runs the whole
# checklist RUNS times (default 5) with every service listed (the guide's four and the N
# generated ones) and reports per run:
#   - wall time and peak RSS of the msa-doctor process (/usr/bin/time -v);
#   - requests to Grafana and to the Kubernetes API, counted by the emulators themselves
#     (GET <server>/_sandbox/requests before and after the run; the database's own discovery
#     traffic is not counted);
#   - the verdicts: failing checks and whether each names the broken Deployment, checks that
#     ended `error`, the three slowest checks (duration_ms of --output json);
#   - CPU seconds of msa-doctor, of the stack's process and of its database during the run;
# then whether the verdicts were the same in every run, the requests by route, and the growth
# from the first size to the last (pods grow 10x from 200 to 2000). Everything twice: the
# whole checklist, and without the dashboard scan (--skip grafana.dashboards), to split the
# cost of the guide's chain from the scan's.
# Targets (issue 8): the whole checklist under 2 s and 150 MB peak at 2,000 Deployments,
# cost linear in pods, the same verdicts in 5 runs out of 5, the broken one named, no other
# failure.
#
# Usage: bash scripts/bench-scale.sh [RUNS] [SIZE...]   (needs python3, curl, /usr/bin/time and
#        Debian's victoria-metrics; MSA_DOCTOR_BENCH_BACKEND=prometheus to use Prometheus)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
shift || true
SIZES=${*:-200 2000}
BACKEND=${MSA_DOCTOR_BENCH_BACKEND:-victoria-metrics}
for tool in python3 curl /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-scale.sh needs $tool" >&2; exit 2; }
done
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/msa-doctor
work=$(mktemp -d)
stack_pid=""
stop_stack() {
  if [ -n "$stack_pid" ]; then
    kill "$stack_pid" 2>/dev/null || true
    wait "$stack_pid" 2>/dev/null || true
    stack_pid=""
  fi
}
# BENCH_SCALE_KEEP=1 keeps the reports, time -v outputs and the stacks' stderr (path printed).
cleanup() {
  stop_stack
  if [ "${BENCH_SCALE_KEEP:-0}" = 1 ]; then echo "kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The request count of one emulated server.
total() { curl -fsS "$1/_sandbox/requests" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }

printf 'msa-doctor %s, backend %s, %s runs per size, %s cores, load %s at start\n' \
  "$("$BIN" --version | cut -d' ' -f2)" "$BACKEND" "$RUNS" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"

for N in $SIZES; do
  d="$work/$N"
  mkdir -p "$d"
  t0=$(date +%s.%N)
  MSA_DOCTOR_SANDBOX_SCALE=$N "$BIN" demo --keep-running --backend "$BACKEND" >"$d/env" 2>"$d/err" &
  stack_pid=$!
  for _ in $(seq 1 3000); do
    grep -q 'serving' "$d/err" 2>/dev/null && break
    kill -0 "$stack_pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '^export MSA_DOCTOR_GRAFANA_URL' "$d/env" || {
    cat "$d/err" >&2
    echo "the scaled practice stack (N=$N) did not start" >&2
    exit 1
  }
  ready=$(echo "$(date +%s.%N) - $t0" | bc -l)
  broken=$(sed -n 's/.*broken: \([^;]*\);.*/\1/p' "$d/err")
  (
    set -a
    # shellcheck disable=SC1091
    source "$d/env"
    set +a
    grafana=$MSA_DOCTOR_GRAFANA_URL
    kube=$(sed -n 's/^ *server: //p' "$KUBECONFIG" | head -1)
    services="user-service,order-service,delivery-service,orchestrator-service,$(seq -f 'svc-%04g' 1 "$N" | paste -sd,)"
    printf '\nN=%s: %s Deployments (%s generated + 9 of the guide), %s generated pods, 100 dashboards x 20 panels; stack ready in %.0f s; broken: %s\n' \
      "$N" "$((N + 9))" "$N" "$((N * 5))" "$ready" "$broken"
    grep -E '^(practice stack up|data )' "$d/err" | sed 's/^/  stack: /'
    # CPU seconds (user + system) of the stack's process (emulators, generated pods) and of
    # its database, to see what the run's wall time is spent on.
    db_pid=$(pgrep -P "$stack_pid" | head -1)
    cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
    # Runs the checklist RUNS times against the stack with these extra arguments and prints
    # the figures. $1: variant id, $2: label.
    measure() {
      local variant=$1 label=$2
      shift 2
      local v="$d/$variant"
      mkdir -p "$v"
      curl -fsS "$grafana/_sandbox/requests" >"$v/grafana-requests-before.json"
      curl -fsS "$kube/_sandbox/requests" >"$v/kube-requests-before.json"
      for r in $(seq 1 "$RUNS"); do
        s0=$(cpu "$stack_pid")
        v0=$(cpu "$db_pid")
        g0=$(total "$grafana")
        k0=$(total "$kube")
        /usr/bin/time -v -o "$v/time-$r" "$BIN" check --color never --services "$services" --output json "$@" \
          >"$v/run-$r.json" 2>"$v/stderr-$r" || true
        g1=$(total "$grafana")
        k1=$(total "$kube")
        echo "$r $((g1 - g0)) $((k1 - k0)) $(echo "$(cpu "$stack_pid") - $s0" | bc -l) $(echo "$(cpu "$db_pid") - $v0" | bc -l)" >>"$v/requests"
      done
      curl -fsS "$grafana/_sandbox/requests" >"$v/grafana-requests.json"
      curl -fsS "$kube/_sandbox/requests" >"$v/kube-requests.json"
      python3 - "$v" "$N" "$RUNS" "$broken" "$label" "$work/summary-$variant" <<'EOF'
import json, re, sys
d, n, runs, broken, label, summary = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
print(f"  {label}")
reqs, cpus = {}, {}
for line in open(f"{d}/requests"):
    r, g, k, sc, dbc = line.split()
    reqs[int(r)] = (int(g), int(k))
    cpus[int(r)] = (float(sc), float(dbc))
rows, verdicts = [], []
for r in range(1, runs + 1):
    t = open(f"{d}/time-{r}").read()
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", t)
    wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    try:
        rep = json.load(open(f"{d}/run-{r}.json"))
    except Exception as e:
        rows.append((r, wall, rss, reqs[r], f"cpu s: doctor {user + system:.2f}, stack {cpus[r][0]:.2f}, database {cpus[r][1]:.2f}; no JSON report ({e}); stderr: {open(f'{d}/stderr-{r}').read()[:200]}"))
        verdicts.append(None)
        continue
    checks = rep["checks"]
    fails = [c for c in checks if c["status"] == "fail"]
    errors = [c for c in checks if c["status"] == "error"]
    named = [c["id"] for c in fails if broken and broken in (c.get("message") or "")]
    other = [c["id"] for c in fails if c["id"] not in named]
    slow = sorted(checks, key=lambda c: -(c.get("duration_ms") or 0))[:3]
    verdicts.append(tuple((c["id"], c["status"]) for c in checks))
    s = rep["summary"]
    text = f"cpu s: doctor {user + system:.2f}, stack {cpus[r][0]:.2f}, database {cpus[r][1]:.2f}; "
    text += " ".join(f"{k}={v}" for k, v in s.items() if v)
    text += f"; fail naming {broken}: {','.join(named) or '-'}; other fail: {','.join(other) or 'none'}"
    text += f"; error: {','.join(c['id'] for c in errors) or 'none'}"
    text += "; slowest: " + ", ".join(f"{c['id']} {c.get('duration_ms')}ms" for c in slow)
    text += f"; report duration_ms {rep.get('duration_ms')}"
    rows.append((r, wall, rss, reqs[r], text))
print(f"  {'run':>3} {'wall s':>7} {'RSS MB':>7} {'Grafana':>8} {'kube':>5}  verdicts")
for r, wall, rss, (g, k), text in rows:
    print(f"  {r:>3} {wall:>7.2f} {rss:>7.1f} {g:>8} {k:>5}  {text}")
walls = sorted(w for _, w, _, _, _ in rows)
same = len(set(verdicts)) == 1 and verdicts[0] is not None
print(f"  median wall {walls[len(walls)//2]:.2f} s (target < 2), max RSS {max(x[2] for x in rows):.1f} MB (target < 150); "
      f"verdicts the same in {max(verdicts.count(v) for v in verdicts)} of {runs} runs")
for c in (json.load(open(f"{d}/run-1.json"))["checks"] if verdicts[0] else []):
    if c["status"] in ("fail", "error"):
        print(f"  run 1 {c['id']} {c['status']}: {(c.get('message') or '')[:300]}")
for server in ("grafana", "kube"):
    before = json.load(open(f"{d}/{server}-requests-before.json"))["by"]
    by = {k: v - before.get(k, 0) for k, v in json.load(open(f"{d}/{server}-requests.json"))["by"].items()}
    top = sorted(((k, v) for k, v in by.items() if v), key=lambda kv: -kv[1])[:8]
    print(f"  {server} requests per run, by route: " + ", ".join(f"{k} {v / runs:g}" for k, v in top))
with open(summary, "a") as f:
    f.write(f"{n} {walls[len(walls)//2]} {max(x[2] for x in rows)} {sum(g for _, _, _, (g, _), _ in rows)/runs} {sum(k for _, _, _, (_, k), _ in rows)/runs}\n")
EOF
    }
    measure full "the whole checklist (the dashboard scan included):"
    measure noscan "the checklist without the dashboard scan (--skip grafana.dashboards):" --skip grafana.dashboards
  )
  stop_stack
done

for variant in full noscan; do
  [ -s "$work/summary-$variant" ] || continue
  python3 - "$work/summary-$variant" "$variant" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
if len(rows) >= 2:
    (n0, w0, r0, g0, k0), (n1, w1, r1, g1, k1) = rows[0], rows[-1]
    f = lambda a, b: f"{float(b) / float(a):.1f}x" if float(a) else "-"
    what = "whole checklist" if sys.argv[2] == "full" else "without the dashboard scan"
    print(f"\n{what}, from N={n0} to N={n1} (pods x{int(n1) // int(n0)}): median wall {f(w0, w1)}, peak RSS {f(r0, r1)}, "
          f"Grafana requests {f(g0, g1)}, Kubernetes requests {f(k0, k1)}")
EOF
done
