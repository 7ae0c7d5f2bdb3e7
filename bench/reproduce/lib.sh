#!/usr/bin/env bash
# Shared code of the reproduction scripts (bench/reproduce/*.sh, one per row of bench/results/omniglot.md).
#
# A row is a meta-training run (shared between rows that evaluate the same model, e.g. ProtoNets 5-way and
# 20-way 1-shot) and a test evaluation. Each script states the published schedule and the one used here;
# ITERATIONS=N overrides it (ITERATIONS=published runs the paper's full schedule).
#
# Environment:
#   METAFEW     the binary (default: build/metafew; copy it elsewhere when rebuilding during long runs)
#   OMNIGLOT    the Omniglot folder (default: ../shared/data/omniglot beside the repository)
#   THREADS     OpenMP threads per run (default: 0 = all cores)
#   RUNS        folder of the training runs (default: runs/reproduce); a finished run with the same command
#               is reused, an interrupted one is resumed
#   RESULTS     folder of the row JSON files and checkpoints (default: bench/results/omniglot)
#   TRAIN_ONLY  1: train (or resume) only, test nothing; for a rule that chooses between models on the
#               validation split before the test split is looked at (e.g. metasgd_5w1s.sh)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
METAFEW="${METAFEW:-$ROOT/build/metafew}"
OMNIGLOT="${OMNIGLOT:-$ROOT/../shared/data/omniglot}"
THREADS="${THREADS:-0}"
RUNS="${RUNS:-$ROOT/runs/reproduce}"
RESULTS="${RESULTS:-$ROOT/bench/results/omniglot}"

die() { echo "reproduce: $*" >&2; exit 1; }
[[ -x "$METAFEW" ]] || die "no metafew binary at $METAFEW (run 'make build' or set METAFEW)"
[[ "${DATA:-}" == builtin:* || -d "$OMNIGLOT" ]] || die "no Omniglot folder at $OMNIGLOT (set OMNIGLOT)"
mkdir -p "$RUNS" "$RESULTS/checkpoints"

# iterations PUBLISHED USED: the schedule of this run ('-' for PUBLISHED when the paper states none, e.g.
# early stopping). ITERATIONS=published selects the published one.
iterations() {
  PUBLISHED_ITERATIONS="$1"
  [[ "$1" == "-" ]] && PUBLISHED_ITERATIONS=null
  case "${ITERATIONS:-}" in
    "") ITERS="$2" ;;
    published)
      [[ "$1" != "-" ]] || die "the paper of this row states no schedule (it stopped on validation); set ITERATIONS=N"
      ITERS="$1" ;;
    *[!0-9]* | 0) die "ITERATIONS must be a positive integer or 'published', got '$ITERATIONS'" ;;
    *) ITERS="$ITERATIONS" ;;
  esac
}

# train RUN FLAGS...: meta-trains into $RUNS/RUN. A finished run with the same settings and iterations is
# reused; a run with the same settings that was interrupted (Ctrl-C, machine stopped) or that ran fewer
# iterations is resumed from its last checkpoint, except that a run with a linear or cosine schedule (which
# depends on the total) starts over when the total changes.
train() {
  local run="$1"; shift
  local dir="$RUNS/$run"
  local settings="$*"
  local printable="metafew meta-train --out runs/reproduce/$run --threads $THREADS --iterations $ITERS ${settings//$OMNIGLOT/\$OMNIGLOT}"
  if [[ -f "$dir/train.json" && "$(cat "$dir/settings.txt" 2>/dev/null)" == "$settings" &&
        "$(jq .iterations "$dir/train.json")" == "$ITERS" ]]; then
    echo "reproduce: $run already trained ($dir/train.json)" >&2
    return
  fi
  local start end status=0 resumable=0
  if [[ -f "$dir/last" && "$(cat "$dir/settings.txt" 2>/dev/null)" == "$settings" ]]; then
    resumable=1
    # A linear or cosine schedule depends on the total: a longer run starts over instead of resuming.
    case "$(jq -r .schedule "$dir/config.json" 2>/dev/null)" in
      linear | cosine) [[ "$(jq .iterations "$dir/config.json")" == "$ITERS" ]] || resumable=0 ;;
    esac
  fi
  start=$(date +%s.%N)
  if ((resumable)); then
    echo "reproduce: resuming $dir to $ITERS iterations" >&2
    echo "$printable (resumed)" >>"$dir/commands.txt"
    "$METAFEW" meta-train --resume "$dir" --threads "$THREADS" --iterations "$ITERS" --json \
      >"$dir/summary.json" || status=$?
  else
    echo "reproduce: $printable" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    echo "$settings" >"$dir/settings.txt"
    echo "$printable" >"$dir/commands.txt"
    "$METAFEW" meta-train --out "$dir" --threads "$THREADS" --iterations "$ITERS" --json "$@" \
      >"$dir/summary.json" || status=$?
  fi
  end=$(date +%s.%N)
  # Wall time summed over the sessions of a resumed run.
  local seconds
  seconds=$(echo "$end - $start + $(cat "$dir/elapsed.txt" 2>/dev/null || echo 0)" | bc)
  echo "$seconds" >"$dir/elapsed.txt"
  [[ $status -eq 0 ]] || die "training $run failed (exit $status); its log lines are in $dir/metrics.jsonl"
  jq --arg cmd "$printable" --argjson seconds "$seconds" --argjson threads "$THREADS" \
    --argjson published "$PUBLISHED_ITERATIONS" --argjson iterations "$ITERS" \
    --rawfile history "$dir/commands.txt" \
    '{command: $cmd, history: ($history | rtrimstr("\n") | split("\n")), wall_seconds: $seconds,
      threads: $threads, iterations: $iterations, published_iterations: $published, summary: .}' \
    "$dir/summary.json" >"$dir/train.json"
}

# evaluate ROW RUN PUBLISHED FLAGS...: exports the run's best checkpoint (chosen on validation, or its final
# parameters where the protocol has no validation split) to $RESULTS/checkpoints/RUN.mfck, tests that file
# and writes $RESULTS/ROW.json (without eval's per-class counts, thousands of lines for a test split: they stay
# in the run folder's eval-ROW.json).
evaluate() {
  local row="$1" run="$2" published="$3"; shift 3
  local dir="$RUNS/$run"
  if [[ "${TRAIN_ONLY:-}" == 1 ]]; then
    echo "reproduce: TRAIN_ONLY=1: $row not tested; its run is in $dir" >&2
    return
  fi
  local model="$RESULTS/checkpoints/$run.mfck" rel="${RESULTS#"$ROOT"/}"
  "$METAFEW" export --checkpoint "$dir" --out "$model" >&2 || die "exporting $dir failed"
  local data=()
  [[ "${DATA:-}" == builtin:* ]] || data=(--data "$OMNIGLOT")
  local printable="metafew eval --checkpoint $rel/checkpoints/$run.mfck"
  ((${#data[@]})) && printable+=" --data \$OMNIGLOT"
  printable+=" --threads $THREADS $*"
  echo "reproduce: $printable" >&2
  local start end
  start=$(date +%s.%N)
  "$METAFEW" eval --checkpoint "$model" "${data[@]}" --threads "$THREADS" --json "$@" >"$dir/eval-$row.json" \
    || die "evaluating $row failed"
  end=$(date +%s.%N)
  local machine
  machine="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
  jq -n --arg row "$row" --arg published "$published" --arg cmd "$printable" \
    --arg machine "$machine" --arg version "$("$METAFEW" --version | head -1)" \
    --arg checkpoint "$rel/checkpoints/$run.mfck" \
    --argjson eval_seconds "$(echo "$end - $start" | bc)" \
    --slurpfile train "$dir/train.json" --slurpfile result "$dir/eval-$row.json" \
    '{row: $row, published: $published, result: ($result[0] | del(.checkpoint, .data, .per_class, .most_confused)), eval_command: $cmd,
      eval_seconds: $eval_seconds, training: $train[0], checkpoint: $checkpoint, machine: $machine,
      metafew: $version}' >"$RESULTS/$row.json"
  jq -r '"reproduce: \(.row): \(.result | tostring)"' "$RESULTS/$row.json" >&2
}

# ---- trainings shared by two rows (one definition, so that both rows test the same run) ----

# ProtoNets as the paper trains it: 60-way episodes, 5 queries per class, Adam 1e-3 halved every 2000
# episodes; validation on 5-way episodes with the shots of the test. Used by protonet_{5,20}w{1,5}s.sh.
train_protonet() {  # SHOTS
  iterations - "$([[ $1 == 1 ]] && echo 4000 || echo 2500)"  # published: until validation stopped improving
  train "protonet_${1}shot" --data "$OMNIGLOT" --algo protonet --ways 60 --shots "$1" --queries 5 \
    --test-ways 5 --test-shots "$1" --test-queries 15 --schedule step --schedule-step 2000 --schedule-gamma 0.5
}

# Reptile with the settings ../shared/PROTOCOLS.md gives for Omniglot 5-way (reptile_5w1s_nontransductive.sh,
# reptile_5w5s.sh, reptile_5w5s_nontransductive.sh; reptile_5w1s.sh trains its own model since session 13), with
# the inner Adam state carried from task to task as its code does (--inner-state carry, Note [Reptile's inner
# optimiser state] in src/meta/algorithm.cpp).
train_reptile_5w() {
  iterations 100000 30000
  train reptile_5w --data "$OMNIGLOT" --algo reptile --max-pool=false --ways 5 --shots 10 --queries 5 \
    --meta-batch 5 --inner-steps 5 --inner-batch 10 --inner-lr 0.001 --outer-lr 1.0 --schedule linear \
    --inner-state carry --eval-steps 50 --test-shots 1 --test-queries 1
}

# Pretraining (Baseline / SimpleShot / RFS; Note [Pretraining] in src/meta/pretrain.cpp): conv-4 and a
# classifier over every training class (4,400 with the rotations) on mini-batches of 64 images, Adam 1e-3
# with a cosine schedule over 15,000 batches (about 11 epochs); the best checkpoint chosen on 300 5-way
# 1-shot validation episodes by the centroid head. The papers pretrain on miniImageNet with SGD; on
# Omniglot's 4,400 classes SGD at RFS's 0.05 learned far slower here (0.5% training accuracy after 1,500
# batches, against Adam's 1% after 1,000 and 43% after 3,000). Used by pretrain_*.sh and metabaseline_*.sh.
train_pretrain() {
  iterations - 15000
  train pretrain --data "$OMNIGLOT" --algo pretrain --batch-size 64 --optimizer adam --outer-lr 0.001 \
    --schedule cosine --val-every 1000 --val-episodes 300 --checkpoint-every 1000 --log-every 500
}

# Meta-Baseline's second stage (Chen et al. 2021): ProtoNets with cosine prototypes and a learned scale,
# from the pretrained backbone, episodes as train_protonet's (60-way, 5 queries) with Meta-Baseline's
# optimiser (SGD 0.001, momentum 0.9, weight decay 5e-4), 500 episodes; validation every 100 on 300
# 5-way val episodes with the shots of the test. Used by metabaseline_{5,20}w{1,5}s.sh.
train_metabaseline() {  # SHOTS
  train_pretrain
  local pretrained="$RESULTS/checkpoints/pretrain.mfck"
  "$METAFEW" export --checkpoint "$RUNS/pretrain" --out "$pretrained" >&2 || die "exporting the pretrained run failed"
  iterations - 500
  train "metabaseline_${1}shot" --data "$OMNIGLOT" --algo protonet --distance cosine --init-from "$pretrained" \
    --ways 60 --shots "$1" --queries 5 --test-ways 5 --test-shots "$1" --test-queries 15 --optimizer sgd \
    --outer-lr 0.001 --momentum 0.9 --weight-decay 5e-4 --val-every 100 --val-episodes 300 --checkpoint-every 100
}
