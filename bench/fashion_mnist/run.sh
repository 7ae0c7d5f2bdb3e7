#!/usr/bin/env bash
# Fashion-MNIST as a user's own data, end to end (bench/results/fashion_mnist.md holds the figures):
#   1. Debian's files (dataset-fashion-mnist) -> one flat folder of ten class folders (to_folders.py);
#   2. `metafew data` on it; meta-train with default settings, which stops naming the flags that fit;
#   3. the committed Omniglot checkpoints tested on it as a new dataset (`eval --split all`);
#   4. a split file (5 classes to train on, 5 held out) and ProtoNets meta-trained on the 5, 1 and 5 shots,
#      tested on the held-out 5 beside the Omniglot models;
#   5. adapt on a few images of the held-out classes (even and uneven shots), with the Omniglot model's
#      polarity warning and its fix;
#   6. the pretraining recipe (issue 27) on the same split: a backbone pretrained on the 5 classes, tested
#      5-way on the held-out 5 with the centroid and logistic-regression heads, Meta-Baseline's ProtoNets
#      stage from it, and the Omniglot pretrained backbone beside them.
# Usage: bench/fashion_mnist/run.sh            (OUT=runs/fashion_mnist THREADS=2 ITERATIONS=2000 EPISODES=600)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
METAFEW="${METAFEW:-$root/build/metafew}"
OUT="${OUT:-$root/runs/fashion_mnist}"
THREADS="${THREADS:-2}"
ITERATIONS="${ITERATIONS:-2000}"
EPISODES="${EPISODES:-600}"
CK="$root/bench/results/omniglot/checkpoints"
[ -x "$METAFEW" ] || { echo "no metafew binary at $METAFEW (make build, or METAFEW=...)" >&2; exit 1; }
data="$OUT/data"
res="$OUT/results"
mkdir -p "$OUT" "$res"
say() { printf '\n== %s\n' "$*" >&2; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }

say "1. class folders"
if [ ! -d "$data" ]; then
  run python3 "$here/to_folders.py" "$data"
fi
say "2. the folder as metafew sees it"
run "$METAFEW" data --data "$data"
set +e
run "$METAFEW" meta-train --data "$data" --algo protonet --out "$OUT/defaults" --threads "$THREADS" 2> "$res/defaults.err"
code=$?
set -e
cat "$res/defaults.err" >&2
[ "$code" -eq 2 ] || { echo "expected meta-train with default settings to stop with exit 2, got $code" >&2; exit 1; }

ev() {  # ev NAME ARGS...: eval --json into results/NAME.json
  local name="$1"; shift
  run "$METAFEW" eval --episodes "$EPISODES" --seed 0 --threads "$THREADS" --json --no-record "$@" > "$res/$name.json"
}
say "3. Omniglot checkpoints on every Fashion-MNIST class (--split all, 5-way)"
ev omniglot_protonet_1shot_all_1shot --checkpoint "$CK/protonet_1shot.mfck" --data "$data" --split all --ways 5 --shots 1
ev omniglot_protonet_5shot_all_5shot --checkpoint "$CK/protonet_5shot.mfck" --data "$data" --split all --ways 5 --shots 5
ev omniglot_maml_5w1s_all_1shot --checkpoint "$CK/maml_5w1s.mfck" --data "$data" --split all --ways 5 --shots 1
ev omniglot_matchingnet_5w1s_all_1shot --checkpoint "$CK/matchingnet_5w1s.mfck" --data "$data" --split all --ways 5 --shots 1

say "4. ProtoNets on 5 Fashion-MNIST classes, tested on the other 5"
split="$OUT/splits.txt"
run "$METAFEW" data --data "$data" --write-split "$split" > /dev/null
# The edit a user makes to the written file: clothing worn on the body to train on, the rest held out.
printf '# Fashion-MNIST: 5 classes to meta-train on, 5 held out\n[train]\ntshirt_top\ntrouser\npullover\ndress\ncoat\n[test]\nsandal\nshirt\nsneaker\nbag\nankle_boot\n' > "$split"
for shots in 1 5; do
  run "$METAFEW" meta-train --data "$data" --split-file "$split" --val-split '' --algo protonet --ways 5 \
    --shots "$shots" --queries 15 --iterations "$ITERATIONS" --log-every 500 --threads "$THREADS" \
    --out "$OUT/protonet_${shots}shot" --overwrite
  ev fashion_protonet_${shots}shot_test_${shots}shot --checkpoint "$OUT/protonet_${shots}shot/last" --split test \
    --ways 5 --shots "$shots"
done
ev omniglot_protonet_1shot_test_1shot --checkpoint "$CK/protonet_1shot.mfck" --data "$data" --split-file "$split" \
  --split test --ways 5 --shots 1
ev omniglot_protonet_5shot_test_5shot --checkpoint "$CK/protonet_5shot.mfck" --data "$data" --split-file "$split" \
  --split test --ways 5 --shots 5

say "5. adapt on images of the held-out classes"
task="$OUT/task"
rm -rf "$task"
for c in sandal shirt sneaker bag ankle_boot; do
  mkdir -p "$task/support1/$c" "$task/support5/$c" "$task/uneven/$c" "$task/query/$c"
  cp "$data/$c/06000.png" "$task/support1/$c/"
  for i in 0 1 2 3 4; do cp "$data/$c/0600$i.png" "$task/support5/$c/"; done
  for i in $(seq 6100 6199); do cp "$data/$c/0$i.png" "$task/query/$c/"; done
done
# Uneven shots: 1 to 5 images per class.
n=1
for c in sandal shirt sneaker bag ankle_boot; do
  for i in $(seq 0 $((n - 1))); do cp "$data/$c/0600$i.png" "$task/uneven/$c/"; done
  n=$((n + 1))
done
ad() {  # ad NAME ARGS...: adapt --json into results/NAME.json, its stderr shown
  local name="$1"; shift
  run "$METAFEW" adapt --query "$task/query" --threads "$THREADS" --json --out "$res/$name.json" "$@"
}
ad adapt_fashion_protonet_1shot --checkpoint "$OUT/protonet_1shot/last" --support "$task/support1"
ad adapt_fashion_protonet_5shot --checkpoint "$OUT/protonet_5shot/last" --support "$task/support5"
ad adapt_fashion_protonet_5shot_uneven --checkpoint "$OUT/protonet_5shot/last" --support "$task/uneven"
ad adapt_omniglot_protonet_5shot --checkpoint "$CK/protonet_5shot.mfck" --support "$task/support5"
ad adapt_omniglot_protonet_5shot_invert_no --checkpoint "$CK/protonet_5shot.mfck" --support "$task/support5" --invert no

say "6. pretraining on the 5 training classes; test-time heads and Meta-Baseline on the other 5"
# Omniglot's pretraining recipe (bench/reproduce/lib.sh train_pretrain: Adam 1e-3, cosine schedule, batches
# of 64) for as many batches as the ProtoNets runs had episodes; no validation classes here, so the
# logistic-regression penalty is the one chosen on Omniglot's validation split (C = 10).
run "$METAFEW" meta-train --data "$data" --split-file "$split" --val-split '' --algo pretrain --batch-size 64 \
  --optimizer adam --outer-lr 0.001 --schedule cosine --iterations "$ITERATIONS" --log-every 500 \
  --threads "$THREADS" --out "$OUT/pretrain" --overwrite
for shots in 1 5; do
  ev fashion_pretrain_centroid_test_${shots}shot --checkpoint "$OUT/pretrain/last" --split test --ways 5 \
    --shots "$shots" --head centroid
  ev fashion_pretrain_logreg_test_${shots}shot --checkpoint "$OUT/pretrain/last" --split test --ways 5 \
    --shots "$shots" --head logreg --logreg-c 10
  # Meta-Baseline's second stage (bench/reproduce/lib.sh train_metabaseline), 5-way episodes of the 5 classes.
  run "$METAFEW" meta-train --data "$data" --split-file "$split" --val-split '' --algo protonet --distance cosine \
    --init-from "$OUT/pretrain/last" --ways 5 --shots "$shots" --queries 15 --iterations 500 --optimizer sgd \
    --outer-lr 0.001 --momentum 0.9 --weight-decay 5e-4 --log-every 250 --threads "$THREADS" \
    --out "$OUT/metabaseline_${shots}shot" --overwrite
  ev fashion_metabaseline_${shots}shot_test_${shots}shot --checkpoint "$OUT/metabaseline_${shots}shot/last" \
    --split test --ways 5 --shots "$shots"
  for head in centroid logreg; do
    ev omniglot_pretrain_${head}_test_${shots}shot --checkpoint "$CK/pretrain.mfck" --data "$data" \
      --split-file "$split" --split test --ways 5 --shots "$shots" --head "$head" --logreg-c 10
  done
done
ad adapt_fashion_pretrain_logreg_5shot --checkpoint "$OUT/pretrain/last" --support "$task/support5" --head logreg \
  --logreg-c 10

say "summary"
python3 - "$res" <<'EOF'
import json, os, sys
res = sys.argv[1]
print("| result | accuracy | 95% interval |")
print("| --- | --- | --- |")
for f in sorted(os.listdir(res)):
    if not f.endswith(".json"):
        continue
    j = json.load(open(os.path.join(res, f)))
    ci = j.get("ci95")
    print(f"| {f[:-5]} | {100 * j['accuracy']:.2f}% | {'' if ci is None else f'+- {100 * ci:.2f}'} |")
EOF
