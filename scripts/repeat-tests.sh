#!/usr/bin/env bash
# Runs chosen test files N times in a row, each file on its own, and reports
# the failures per file: the way to tell a flaky test from a broken one.
#
# Usage: scripts/repeat-tests.sh N FILE... [-- VITEST-ARGS...]
#   e.g. scripts/repeat-tests.sh 20 test/integration/controller-*.test.ts
# Logs of failed runs are kept in $REPEAT_LOG_DIR (default: a temp dir).
# Exits 1 when any run failed, 2 on bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,9p' "$0" >&2; exit 2; }
[ "$#" -ge 2 ] || usage
runs="$1"; shift
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "repeat-tests: N must be a whole number ≥ 1, got '$runs'" >&2; usage; }
files=(); extra=()
while [ "$#" -gt 0 ]; do
  if [ "$1" = -- ]; then shift; extra=("$@"); break; fi
  [ -f "$1" ] || { echo "repeat-tests: no such test file: $1" >&2; exit 2; }
  files+=("$1"); shift
done
[ "${#files[@]}" -gt 0 ] || usage
logs="${REPEAT_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/repeat-tests-XXXXXX")}"
mkdir -p "$logs"

declare -A failed seconds
total_failed=0
for f in "${files[@]}"; do
  failed[$f]=0; t0=$SECONDS
  for i in $(seq 1 "$runs"); do
    log="$logs/$(basename "$f").$i.log"
    if npx vitest run "$f" "${extra[@]}" >"$log" 2>&1; then
      rm -f "$log"
      printf '[repeat-tests] %s run %d/%d: ok\n' "$f" "$i" "$runs"
    else
      failed[$f]=$((failed[$f] + 1)); total_failed=$((total_failed + 1))
      printf '[repeat-tests] %s run %d/%d: FAILED (log: %s)\n' "$f" "$i" "$runs" "$log"
      grep -E '^ *(FAIL|×|✗)|AssertionError|Error:' "$log" | head -5 | sed 's/^/    /' || true
    fi
  done
  seconds[$f]=$((SECONDS - t0))
done

echo
echo "file                                                     runs  failed  seconds"
for f in "${files[@]}"; do
  printf '%-56s %5d  %6d  %7d\n' "$f" "$runs" "${failed[$f]}" "${seconds[$f]}"
done
echo "logs of failed runs: $logs"
[ "$total_failed" = 0 ]
