#!/usr/bin/env bash
# Runs one libFuzzer target on its committed seed corpus: `run.sh TARGET CORPUS bounded` (the test suite's
# short run: RUNS inputs, default 5000, fixed seed) or `run.sh TARGET CORPUS long [RUNS]` (make fuzz: 10^6 inputs by default). New inputs go
# to a scratch corpus, never into the committed one; a crash leaves its input in the current folder
# (crash-*, leak-*, timeout-*) and fails the run.
set -euo pipefail
target="$1" corpus="$2" mode="$3" runs="${4:-}"
[[ "$mode" == bounded ]] || runs="${runs:-1000000}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# ASan: leaks are crashes too; UBSan already aborts (-fno-sanitize-recover).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
common=(-rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1)
if [[ "$mode" == bounded ]]; then
  # Fixed seed and input count, so the suite runs the same inputs every time (a time limit would not).
  exec "$target" "${common[@]}" -seed=1 -runs="${runs:-5000}" "$scratch" "$corpus"
else
  exec "$target" "${common[@]}" -runs="$runs" "$scratch" "$corpus"
fi
