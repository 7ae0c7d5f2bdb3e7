#!/usr/bin/env bash
# Runs every row of bench/results/omniglot.md in turn (each script's own schedule; ITERATIONS, THREADS, ...
# as in lib.sh), then rebuilds the table. A row that fails stops nothing but is reported at the end.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
failed=()
for script in "$here"/*_*.sh; do
  bash "$script" || failed+=("$(basename "$script")")
done
python3 "$here/table.py"
if ((${#failed[@]})); then
  echo "reproduce: failed: ${failed[*]}" >&2
  exit 1
fi
