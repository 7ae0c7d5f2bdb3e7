#!/usr/bin/env bash
# Lake's protocol (issue 29; bench/results/omniglot.md, "Lake's protocol"): the choices, made without
# images_evaluation. Each variant meta-trains on background-train (the 25 background alphabets not held out;
# Note [Omniglot splits] in src/data/dataset.cpp) and is measured on 20-way 1-shot trials within each of the
# 5 held-out background alphabets (background-val: one alphabet per episode, the support drawn by one person,
# every query by another), 1000 episodes of 15 queries per class, seed 0. Results: one JSON per variant in
# bench/results/lake/ and the table in bench/results/lake_validation.md.
#
#   bench/lake/validate.sh [VARIANT...]     (default: all; a finished variant is not run again)
#
# Environment: METAFEW (default build/metafew), OMNIGLOT (default ../shared/data/omniglot), THREADS (default 2),
# RUNS (default runs/lake).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
METAFEW="${METAFEW:-$ROOT/build/metafew}"
OMNIGLOT="${OMNIGLOT:-$ROOT/../shared/data/omniglot}"
THREADS="${THREADS:-2}"
RUNS="${RUNS:-$ROOT/runs/lake}"
OUT="$ROOT/bench/results/lake"
mkdir -p "$RUNS" "$OUT"

# Rotations of the training characters as new classes (as the Vinyals-split rows train): a split file in
# which background-train's characters appear at 0, 90, 180 and 270 degrees; the other splits as derived.
ROTATED="$RUNS/split_rotated.txt"
[[ -f "$ROTATED" ]] || "$METAFEW" data --data "$OMNIGLOT" --rotate background-train --write-split "$ROTATED" >/dev/null

# The base recipe: the Lake row's (ProtoNets, 60-way 1-shot 5 queries, Adam 1e-3 halved at 2,000 of 3,000),
# validated every 1,000 iterations on 200 within-alphabet trials (5 queries) of background-val. The long
# variants halve the step size at 2/3 of their length too.
COMMON="--algo protonet --shots 1 --schedule step --schedule-gamma 0.5 --train-split background-train
  --val-split background-val --test-episodes-within alphabet --test-ways 20 --test-shots 1 --test-queries 5
  --val-every 1000 --val-episodes 200"
WIDE="--ways 60 --queries 5"
SHORT="--iterations 3000 --schedule-step 2000"
LONG="--iterations 15000 --schedule-step 10000"
declare -A VARIANT=(
  [base]="$COMMON $WIDE $SHORT"
  [rotated]="$COMMON $WIDE $SHORT --split-file $ROTATED"
  [rotated_within]="$COMMON --ways 20 --queries 15 $SHORT --split-file $ROTATED --episodes-within alphabet"
  [rotated_affine]="$COMMON $WIDE $SHORT --split-file $ROTATED --augment affine"
  [rotated_56px]="$COMMON $WIDE $SHORT --split-file $ROTATED --image-size 56"
  [rotated_128f]="$COMMON $WIDE $SHORT --split-file $ROTATED --filters 128"
  [rotated_long]="$COMMON $WIDE $LONG --split-file $ROTATED"
  [rotated_affine_long]="$COMMON $WIDE $LONG --split-file $ROTATED --augment affine"
)
ORDER=(base rotated rotated_within rotated_affine rotated_56px rotated_128f rotated_long rotated_affine_long)
(($# > 0)) && ORDER=("$@")

for v in "${ORDER[@]}"; do
  [[ -n "${VARIANT[$v]:-}" ]] || { echo "validate: unknown variant '$v' (known: ${!VARIANT[*]})" >&2; exit 2; }
  [[ -f "$OUT/$v.json" ]] && { echo "validate: $v done ($OUT/$v.json)" >&2; continue; }
  run="$RUNS/$v"
  start=$(date +%s)
  status=0 before=0
  if [[ -f "$run/last" && "$(cat "$run/flags.txt" 2>/dev/null)" == "${VARIANT[$v]}" ]]; then
    # An interrupted variant (Ctrl-C saves its last checkpoint) continues where it stopped.
    before=$(cat "$run/seconds.txt" 2>/dev/null || echo 0)
    "$METAFEW" meta-train --resume "$run" --threads "$THREADS" --iterations "$(jq .iterations "$run/config.json")" ||
      status=$?
  else
    rm -rf "$run"
    mkdir -p "$run"
    echo "${VARIANT[$v]}" >"$run/flags.txt"
    # shellcheck disable=SC2086
    "$METAFEW" meta-train --out "$run" --threads "$THREADS" --data "$OMNIGLOT" ${VARIANT[$v]} || status=$?
  fi
  trained=$((before + $(date +%s) - start))  # wall time summed over interruptions
  echo "$trained" >"$run/seconds.txt"
  ((status == 0)) || { echo "validate: $v stopped (exit $status); run the script again to continue it" >&2; exit "$status"; }
  "$METAFEW" eval --checkpoint "$run/last" --split background-val --episodes-within alphabet --ways 20 --shots 1 \
    --queries 15 --episodes 1000 --seed 0 --threads "$THREADS" --no-record --json >"$run/val.json"
  jq --arg v "$v" --arg flags "${VARIANT[$v]//$ROOT\//}" --argjson trained "$trained" \
    '{variant: $v, flags: ($flags | gsub("\\s+"; " ")), training_seconds: $trained, accuracy, ci95, episodes, seconds}' \
    "$run/val.json" >"$OUT/$v.json"
  echo "validate: $v: $(jq -r '"\(.accuracy * 100 | tostring | .[0:5])% +- \(.ci95 * 100 | tostring | .[0:4])"' "$OUT/$v.json")" >&2
done
