#!/usr/bin/env bash
# Speed of `msa-doctor lint` (release build). Not a test; run by hand. Targets (issue 12): a
# 3,000-file repository in under 0.5 s; a 1,000-Deployment `kubectl get -o yaml` dump parses.
#
# Generated in a temporary folder:
#   1. repo/: 250 services, each a Gradle module (build.gradle, application.yml,
#      application-k8s.yml, 6 Java sources, a Dockerfile) and its manifests (a Deployment and
#      a Service under k8s/<service>/): 3,000 files in all;
#   2. dump.yaml: one `kind: List` of 1,000 Deployments as `kubectl get deploy -o yaml` prints
#      them (status, managedFields-like metadata, probes, resources), ~70 lines each.
# Each is linted RUNS times (hyperfine when installed, else a `date +%s.%N` loop); the median
# wall time and the report's summary line are printed.
#
# Usage: bash scripts/bench-lint.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet
BIN=$CARGO_TARGET_DIR/release/msa-doctor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The 3,000-file repository.
repo=$work/repo
for i in $(seq -w 1 250); do
  svc=svc-$i
  m=$repo/$svc
  mkdir -p "$m/src/main/resources" "$m/src/main/java/shop/$i" "$repo/k8s/$svc"
  cat > "$m/build.gradle" <<EOF
plugins {
    id 'java'
    id 'org.springframework.boot' version '3.3.4'
}

dependencies {
    implementation 'org.springframework.boot:spring-boot-starter-web'
    implementation 'org.springframework.boot:spring-boot-starter-actuator'
    runtimeOnly 'io.micrometer:micrometer-registry-prometheus'
}
EOF
  cat > "$m/src/main/resources/application.yml" <<EOF
spring:
  application:
    name: $svc
management:
  endpoints:
    web:
      exposure:
        include: health,info,prometheus
  metrics:
    tags:
      application: \${spring.application.name}
    distribution:
      percentiles-histogram:
        http.server.requests: true
EOF
  printf 'server:\n  shutdown: graceful\n' > "$m/src/main/resources/application-k8s.yml"
  for c in Application Controller Service Repository Entity Config; do
    printf 'package shop;\n\npublic class %s%s {\n    // generated for the benchmark\n}\n' "$c" "$i" \
      > "$m/src/main/java/shop/$i/$c.java"
  done
  printf 'FROM eclipse-temurin:21-jre\nCOPY build/libs/app.jar /app.jar\nENTRYPOINT ["java","-jar","/app.jar"]\n' > "$m/Dockerfile"
  cat > "$repo/k8s/$svc/deployment.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $svc-deploy
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels:
      app: $svc
  template:
    metadata:
      labels:
        app: $svc
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/path: /actuator/prometheus
        prometheus.io/port: "8080"
    spec:
      containers:
        - name: app
          image: registry.example.com/shop/$svc:1.0.$i
          env:
            - name: SPRING_PROFILES_ACTIVE
              value: k8s
          ports:
            - name: http
              containerPort: 8080
          readinessProbe:
            httpGet:
              path: /actuator/health/readiness
              port: 8080
EOF
  cat > "$repo/k8s/$svc/service.yaml" <<EOF
apiVersion: v1
kind: Service
metadata:
  name: $svc
  namespace: shop
spec:
  selector:
    app: $svc
  ports:
    - name: http
      port: 80
      targetPort: http
EOF
done
files=$(find "$repo" -type f | wc -l)

# 2. The 1,000-Deployment dump.
dump=$work/dump.yaml
{
  printf 'apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: ""\nitems:\n'
  for i in $(seq 1 1000); do
    cat <<EOF
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    annotations:
      deployment.kubernetes.io/revision: "3"
    creationTimestamp: "2026-11-01T10:00:00Z"
    generation: 3
    labels:
      app: dump-$i
    name: dump-$i
    namespace: shop
    resourceVersion: "12345$i"
    uid: 0b5f3c3e-0000-4000-8000-$(printf '%012d' "$i")
  spec:
    progressDeadlineSeconds: 600
    replicas: 1
    revisionHistoryLimit: 10
    selector:
      matchLabels:
        app: dump-$i
    strategy:
      rollingUpdate:
        maxSurge: 25%
        maxUnavailable: 25%
      type: RollingUpdate
    template:
      metadata:
        annotations:
          prometheus.io/path: /actuator/prometheus
          prometheus.io/port: "8080"
          prometheus.io/scrape: "true"
        labels:
          app: dump-$i
      spec:
        containers:
        - env:
          - name: SPRING_PROFILES_ACTIVE
            value: prod
          image: registry.example.com/shop/dump-$i:1.0
          imagePullPolicy: IfNotPresent
          name: app
          ports:
          - containerPort: 8080
            name: http
            protocol: TCP
          readinessProbe:
            failureThreshold: 3
            httpGet:
              path: /actuator/health/readiness
              port: 8080
              scheme: HTTP
            periodSeconds: 10
          resources:
            limits:
              memory: 512Mi
            requests:
              cpu: 100m
              memory: 256Mi
        dnsPolicy: ClusterFirst
        restartPolicy: Always
        terminationGracePeriodSeconds: 30
  status:
    availableReplicas: 1
    observedGeneration: 3
    readyReplicas: 1
    replicas: 1
    updatedReplicas: 1
EOF
  done
} > "$dump"
dump_lines=$(wc -l < "$dump")

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
bench() {
  local name=$1; shift
  if command -v hyperfine >/dev/null; then
    hyperfine --runs "$RUNS" --warmup 1 -i --style basic -n "$name" "$*" 2>&1 | grep -E 'Time|Range'
  else
    local t=()
    "$@" >/dev/null 2>&1 || true
    for _ in $(seq "$RUNS"); do
      local s e
      s=$(date +%s.%N)
      "$@" >/dev/null 2>&1 || true
      e=$(date +%s.%N)
      t+=("$(awk -v s="$s" -v e="$e" 'BEGIN { print e - s }')")
    done
    printf '%s: median %.3f s over %s runs (min %.3f s)\n' "$name" \
      "$(printf '%s\n' "${t[@]}" | median)" "$RUNS" "$(printf '%s\n' "${t[@]}" | sort -n | head -1)"
  fi
}

echo "repository: $files files ($repo)"
bench "lint repo" "$BIN" lint --color never "$repo"
"$BIN" lint --color never "$repo" | tail -1
echo
echo "dump: 1,000 Deployments, $dump_lines lines, $(du -h "$dump" | cut -f1)"
bench "lint dump" "$BIN" lint --color never "$dump"
"$BIN" lint --color never "$dump" | tail -1
