#!/usr/bin/env bash
# Throughput of meta-train over MPI processes against one process (bench/results/scaling.md): MAML 5w1s on
# Omniglot (conv-4, 64 filters, 28x28, 15 queries, meta-batch 32, 1 inner step, no validation), each
# layout run REPEATS times in turn (A B C A B C ...), tasks per second and communication per iteration
# taken from the training windows after the first (which holds the warm-up).
# Usage: bench/scaling/run.sh   (LAYOUTS="single np1t2 np2t1" REPEATS=3 ITERATIONS=40 LOG=10 OUT=/tmp/metafew_scaling)
# Layouts: single = no mpirun, --threads 2; npPtT = mpirun -np P, --threads T. Pause any other work first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
METAFEW="${METAFEW:-$root/build/metafew}"
DATA="${DATA:-$root/../shared/data/omniglot}"
LAYOUTS="${LAYOUTS:-single np1t2 np2t1}"
REPEATS="${REPEATS:-3}"
ITERATIONS="${ITERATIONS:-40}"
LOG="${LOG:-10}"
OUT="${OUT:-/tmp/metafew_scaling}"
ALGO_FLAGS="${ALGO_FLAGS:---algo maml --ways 5 --shots 1 --queries 15 --meta-batch 32 --inner-steps 1 --inner-lr 0.4}"
mkdir -p "$OUT"
root_flag=""; [ "$(id -u)" -eq 0 ] && root_flag="--allow-run-as-root"
results="$OUT/windows.jsonl"
: > "$results"
for rep in $(seq 1 "$REPEATS"); do
  for layout in $LAYOUTS; do
    run="$OUT/$layout"
    if [ "$layout" = single ]; then
      launch=("$METAFEW"); threads=2; procs=1
    else
      procs="${layout#np}"; procs="${procs%t*}"; threads="${layout#*t}"
      # Each process bound to its own --threads cores (Open MPI binds a lone process to one core otherwise).
      launch=(mpirun $root_flag --oversubscribe --map-by "slot:PE=$threads" --bind-to core -np "$procs" "$METAFEW")
    fi
    "${launch[@]}" meta-train --data "$DATA" $ALGO_FLAGS --val-split '' --iterations "$ITERATIONS" \
      --log-every "$LOG" --checkpoint-every 1000000 --threads "$threads" --out "$run" --overwrite > /dev/null 2> "$OUT/$layout.err" \
      || { cat "$OUT/$layout.err" >&2; exit 1; }
    python3 - "$run/metrics.jsonl" "$layout" "$rep" >> "$results" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for w in lines[1:]:
    w.update(layout=sys.argv[2], repeat=int(sys.argv[3]))
    print(json.dumps(w))
PY
    echo "$layout repeat $rep done" >&2
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
order = []
for r in rows:
    if r["layout"] not in order: order.append(r["layout"])
print("| layout | tasks/s (median of windows) | windows | comm s/iteration | comm MB/iteration |")
print("| --- | --- | --- | --- | --- |")
for lay in order:
    w = [r for r in rows if r["layout"] == lay]
    tps = statistics.median(r["tasks_per_second"] for r in w)
    cs = [r["comm_seconds_per_iteration"] for r in w if "comm_seconds_per_iteration" in r]
    cb = [r["comm_mb_per_iteration"] for r in w if "comm_mb_per_iteration" in r]
    print(f"| {lay} | {tps:.2f} | {len(w)} | {statistics.median(cs):.4f} | {statistics.median(cb):.3f} |" if cs else
          f"| {lay} | {tps:.2f} | {len(w)} | - | - |")
PY
