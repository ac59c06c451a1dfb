#!/bin/sh
# An msa-doctor plugin (`kind = "exec"`): is there room left on a disk?
#
# Usage: disk-space.sh [PATH] [MIN_FREE_PERCENT]     (defaults: / and 10)
#
# The contract of a plugin, which any program in any language can follow:
# - print ONE JSON object on stdout (log lines before it are allowed; the last line counts):
#     {"status": "pass|warn|fail|error", "message": "one line",
#      "remedy": "what to type (may span lines)", "evidence": {...free-form, no secrets...}}
# - exit 0. A non-zero exit means the plugin itself broke: msa-doctor reports `error` with
#   the exit code and what the plugin printed on stderr.
# - finish within the check's timeout (MSA_DOCTOR_TIMEOUT_MS); past it, the plugin and
#   everything it started are killed and the check is `error`.
# msa-doctor passes the settings as MSA_DOCTOR_GRAFANA_URL, MSA_DOCTOR_NAMESPACE,
# MSA_DOCTOR_MONITORING_NAMESPACE, MSA_DOCTOR_SERVICES, MSA_DOCTOR_TOPIC, MSA_DOCTOR_WINDOW,
# MSA_DOCTOR_TIMEOUT_MS (and MSA_DOCTOR_PROMETHEUS_URL when set); never a password or token.
set -eu

path=${1:-/}
min=${2:-10}

# POSIX df: "Filesystem 1024-blocks Used Available Capacity Mounted-on", one line per disk.
line=$(df -Pk "$path" 2>&1 | awk 'NR == 2') || true
if [ -z "$line" ]; then
    echo "df could not read $path" >&2
    exit 2
fi
# shellcheck disable=SC2086 # splitting the df line into fields is the point
set -- $line
size_kb=$2
avail_kb=$4
mount=$6

# Quotes and backslashes in a mount point must not break the JSON.
json() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

if [ "$size_kb" -eq 0 ]; then
    printf '{"status":"pass","message":"%s reports no size (a virtual file system)","evidence":{"mount":"%s"}}\n' \
        "$(json "$mount")" "$(json "$mount")"
    exit 0
fi

free_pct=$((avail_kb * 100 / size_kb))
free_mb=$((avail_kb / 1024))
evidence=$(printf '{"mount":"%s","free_percent":%s,"free_mb":%s,"min_free_percent":%s}' \
    "$(json "$mount")" "$free_pct" "$free_mb" "$min")

if [ "$free_pct" -ge "$min" ]; then
    printf '{"status":"pass","message":"%s has %s%% free (%s MiB)","evidence":%s}\n' \
        "$(json "$mount")" "$free_pct" "$free_mb" "$evidence"
else
    # The remedy is what a user would type; \n separates the lines.
    printf '{"status":"fail","message":"%s has only %s%% free (%s MiB), less than %s%%","remedy":"du -xh %s 2>/dev/null | sort -h | tail -n 20\\ndocker image prune\\njournalctl --vacuum-size=200M","evidence":%s}\n' \
        "$(json "$mount")" "$free_pct" "$free_mb" "$min" "$(json "$mount")" "$evidence"
fi
