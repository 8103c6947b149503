#!/usr/bin/env bash
# The integration suite N times in a row (default 3) with both cores also kept busy by a
# CPU hog (two busy loops at nice 19), to show the fault tests neither fail nor hang under
# load. Prints each run's outcome and wall time; the figures go to docs/testing.md.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
py=.venv/bin/python
hogs=()
for _ in 1 2; do nice -n 19 "$py" -c "while True: pass" & hogs+=($!); done
trap 'kill "${hogs[@]}" 2>/dev/null' EXIT
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  timeout 3600 "$py" -m pytest -m integration tests -q -p no:cacheprovider > "/tmp/stress-$i.log" 2>&1
  rc=$?
  echo "run $i: rc $rc, $(( $(date +%s) - start )) s, $(tail -1 "/tmp/stress-$i.log")"
done
