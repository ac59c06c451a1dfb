#!/usr/bin/env bash
# Fills in deploy/krew/msa-doctor.yaml's sha256 lines from the release archives in DIR:
#   deploy/krew/fill-checksums.sh dist/            # writes the manifest in place
#   deploy/krew/fill-checksums.sh dist/ out.yaml   # or to another file
# Each platform's `uri:` ends with an archive's file name; the `sha256:` line after it gets that
# file's checksum. A missing archive is an error naming it (exit 1), and nothing is written.
set -euo pipefail

usage() { echo "usage: $0 DIR [OUT]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
manifest="$here/msa-doctor.yaml"
out=${2:-$manifest}
[ -d "$dir" ] || { echo "$0: $dir is not a folder" >&2; exit 2; }

if command -v sha256sum >/dev/null 2>&1; then
  sum() { sha256sum "$1" | cut -d' ' -f1; }
else
  sum() { shasum -a 256 "$1" | cut -d' ' -f1; }   # macOS
fi

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
missing=0
archive=""
while IFS= read -r line || [ -n "$line" ]; do
  if [[ $line =~ ^[[:space:]]*uri:[[:space:]]*([^[:space:]]+) ]]; then
    archive=${BASH_REMATCH[1]##*/}
  elif [[ $line =~ ^([[:space:]]*)sha256: ]] && [ -n "$archive" ]; then
    indent=${BASH_REMATCH[1]}
    if [ -f "$dir/$archive" ]; then
      line="${indent}sha256: \"$(sum "$dir/$archive")\""
    else
      echo "$0: no $archive in $dir" >&2
      missing=1
    fi
    archive=""
  fi
  printf '%s\n' "$line" >>"$tmp"
done <"$manifest"
[ "$missing" -eq 0 ] || exit 1
cp "$tmp" "$out"
echo "$out: $(grep -c 'sha256: "[0-9a-f]\{64\}"' "$out") checksums"
