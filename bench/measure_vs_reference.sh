#!/usr/bin/env bash
# Measures metafew bench and the PyTorch reference (../shared/peers/torch_meta.py, tuned as its README) back to
# back for the rows of bench/results/speed.md. Run from anywhere; needs python3-torch and libopenblas0-openmp.
# MATRIX=1: every cell of issue 6's table (6 algorithms x {5w1s, 20w1s} x {1, 2} threads) as a markdown table
# (about 20 minutes); CELLS="algo:ways:threads ...": those cells only, as MATRIX; ONE_THREAD=1: the main rows at 1 thread;
# "bare conv" is the bare forward primitives of the model's convolutions, "bare step" the three kernels of a
# training step (Note [Bare conv of the model's layers] in src/cli/bench.cpp).
# IMAGES=1: issue 26's rows (ResNet-12 at 32x32x3 and 84x84x3, conv-4 at miniImageNet's shape; about 15 minutes,
# REPEATS=3 timed iterations each, 1 warm-up); PRETRAIN=1: issue 27's pretraining rows (conv-4 28x28x1 and
# ResNet-12 32x32x3 at 1 and 2 threads; LARGE=1 adds ResNet-12 84x84x3, batch 32); neither: the main rows.
cd "$(dirname "$0")/.."
BL=$(dirname "$(dpkg -L libopenblas0-openmp | grep '/libblas.so.3$' | head -1)")
ref() { env MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=536870912 LD_LIBRARY_PATH=$BL /usr/bin/python3 ../shared/peers/torch_meta.py --mode bench "$@" --warmup 2 --timed 5 2>/dev/null | tail -1; }
row() { # algo threads ways queries mb steps lr
  echo "ROW $*"
  ./build/metafew bench --algo $1 --threads $2 --ways $3 --shots 1 --queries $4 --meta-batch $5 --inner-steps $6 --inner-lr $7 --json 2>/dev/null | jq -c '{algo, threads, s: .seconds_per_iter_median, gflops, peak_fraction, bare: .bare_conv_gflops, rss: .peak_rss_mb}'
  ref --algo $1 --threads $2 --ways $3 --shots 1 --queries $4 --meta-batch $5 --inner-steps $6 --inner-lr $7 | jq -c '{ref_s: .seconds_per_meta_iter_median, ref_rss: .peak_rss_mb}'
}
# One cell of issue 6's table as a markdown row: metafew's standard row for ALGO at WAYS (5 or 20) and
# THREADS, then the reference with the same settings; the speed-up is reference / metafew.
cell() { # algo ways threads
  local m r
  m=$(./build/metafew bench --algo "$1" --ways "$2" --threads "$3" --json 2>/dev/null)
  case "$1:$2" in
    reptile:*) r=$(ref --algo reptile --ways "$2" --threads "$3") ;;
    *:5) r=$(ref --algo "$1" --ways 5 --shots 1 --queries 15 --meta-batch 32 --inner-steps 1 --inner-lr 0.4 --threads "$3") ;;
    *) r=$(ref --algo "$1" --ways 20 --shots 1 --queries 5 --meta-batch 16 --inner-steps 5 --inner-lr 0.1 --threads "$3") ;;
  esac
  jq -rn --argjson m "$m" --argjson r "$r" --arg t "$(date +%H:%M:%S)" '"| \($m.algo) | \($m.ways)w | \($m.threads) | \($m.seconds_per_iter_median * 1000 | round / 1000) | \($r.seconds_per_meta_iter_median) | \($r.seconds_per_meta_iter_median / $m.seconds_per_iter_median * 100 | round / 100)x | \($m.bare_conv_gflops | round) | \($m.peak_rss_mb | round) | \($r.peak_rss_mb | round) | \($t) |"'
}
# One of issue 26's rows: metafew's flags and the reference's differ in the model's names only.
# image_row algo threads queries meta_batch inner_steps inner_lr model image_size channels widths_or_filters
image_row() {
  local a=$1 t=$2 q=$3 mb=$4 st=$5 lr=$6 model=$7 size=$8 ch=$9 wf=${10} mflags rflags m r
  if [ "$model" = resnet12 ]; then mflags="--model resnet12 --widths $wf"; rflags="--arch resnet12 --widths $wf"
  else mflags="--filters $wf"; rflags="--filters $wf"; fi
  m=$(./build/metafew bench --algo "$a" --threads "$t" --ways 5 --shots 1 --queries "$q" --meta-batch "$mb" \
      --inner-steps "$st" --inner-lr "$lr" --image-size "$size" --channels "$ch" $mflags --warmup 1 \
      --repeats "${REPEATS:-3}" --json 2>/dev/null)
  r=$(env MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=536870912 \
      LD_LIBRARY_PATH=$BL /usr/bin/python3 ../shared/peers/torch_meta.py --mode bench --algo "$a" --threads "$t" \
      --ways 5 --shots 1 --queries "$q" --meta-batch "$mb" --inner-steps "$st" --inner-lr "$lr" --image-size "$size" \
      --channels "$ch" $rflags --warmup 1 --timed "${REPEATS:-3}" 2>/dev/null | tail -1)
  jq -rn --argjson m "$m" --argjson r "$r" --arg t "$(date +%H:%M:%S)" '"| \($m.algo) \($m.model) \($m.image_size)x\($m.image_size)x\($m.channels) mb \($m.meta_batch) steps \($m.inner_steps) | \($m.conv_algorithm) | \($m.threads) | \($m.seconds_per_iter_median * 1000 | round / 1000) | \($r.seconds_per_meta_iter_median) | \($r.seconds_per_meta_iter_median / $m.seconds_per_iter_median * 100 | round / 100)x | \($m.gflops | round) | \($m.bare_conv_gflops | round) | \($m.peak_fraction * 100 | round)% | \($m.bare_step_conv_gflops | round) | \($m.step_peak_fraction * 100 | round)% | \($m.peak_rss_mb | round) | \($r.peak_rss_mb | round) | \($t) |"'
}
# One row of issue 27's pretraining table (Note [Benchmarking pretraining] in src/cli/bench.cpp): a mini-batch
# of BATCH images over 64 classes, SGD with momentum; the speed-up is metafew's images/s over the reference's.
# pretrain_row threads model image_size channels widths_or_filters batch
pretrain_row() {
  local t=$1 model=$2 size=$3 ch=$4 wf=$5 b=$6 mflags rflags m r
  if [ "$model" = resnet12 ]; then mflags="--model resnet12 --widths $wf"; rflags="--arch resnet12 --widths $wf"
  else mflags="--filters $wf"; rflags="--filters $wf"; fi
  m=$(./build/metafew bench --algo pretrain --threads "$t" --batch-size "$b" --pretrain-classes 64 \
      --image-size "$size" --channels "$ch" $mflags --warmup 1 --repeats "${REPEATS:-5}" --json 2>/dev/null)
  r=$(env MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=536870912 \
      LD_LIBRARY_PATH=$BL /usr/bin/python3 ../shared/peers/torch_meta.py --mode bench --algo pretrain --threads "$t" \
      --meta-batch "$b" --pretrain-classes 64 --image-size "$size" --channels "$ch" $rflags --warmup 1 \
      --timed "${REPEATS:-5}" 2>/dev/null | tail -1)
  jq -rn --argjson m "$m" --argjson r "$r" --arg t "$(date +%H:%M:%S)" '"| pretrain \($m.model) \($m.image_size)x\($m.image_size)x\($m.channels) batch \($m.batch_size) | \($m.conv_algorithm) | \($m.threads) | \($m.images_per_second * 10 | round / 10) | \($r.images_per_second) | \($m.images_per_second / $r.images_per_second * 100 | round / 100)x | \($m.gflops | round) | \($r.achieved_gflops | round) | \($m.bare_conv_gflops | round) | \($m.peak_fraction * 100 | round)% | \($m.bare_step_conv_gflops | round) | \($m.step_peak_fraction * 100 | round)% | \($m.peak_rss_mb | round) | \($r.peak_rss_mb | round) | \($t) |"'
}
uptime
if [ "${PRETRAIN:-0}" = 1 ]; then  # issue 27's rows: conv-4 28x28x1, ResNet-12 32x32x3, ResNet-12 84x84x3 (batch 32)
  echo "| row | convolutions | threads | metafew images/s | PyTorch images/s | speed-up | metafew GFLOP/s | PyTorch GFLOP/s | bare conv GFLOP/s | of bare conv | bare step GFLOP/s | of bare step | metafew RSS MB | PyTorch RSS MB | time |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for t in 1 2; do
    pretrain_row $t conv4 28 1 64 64
    pretrain_row $t resnet12 32 3 64,160,320,640 64
  done
  if [ "${LARGE:-0}" = 1 ]; then for t in 1 2; do pretrain_row $t resnet12 84 3 64,160,320,640 32; done; fi
elif [ "${IMAGES:-0}" = 1 ]; then
  echo "| row | convolutions | threads | metafew s/iter | PyTorch s/iter | speed-up | metafew GFLOP/s | bare conv GFLOP/s | of bare conv | bare step GFLOP/s | of bare step | metafew RSS MB | PyTorch RSS MB | time |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for t in 1 2; do
    image_row protonet $t 15 1 1 0.4 resnet12 32 3 64,160,320,640
    image_row maml $t 15 2 1 0.01 resnet12 32 3 64,160,320,640
    image_row maml $t 15 4 5 0.01 conv4 84 3 32
  done
  for t in 1 2; do image_row protonet $t 15 1 1 0.4 resnet12 84 3 64,160,320,640; done
elif [ -n "${CELLS:-}" ]; then  # chosen cells, e.g. CELLS="maml:20:1 metasgd:20:1" (algo:ways:threads)
  echo "| algo | task | threads | metafew s/iter | PyTorch s/iter | speed-up | bare conv GFLOP/s | metafew RSS MB | PyTorch RSS MB | time |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for c in $CELLS; do IFS=: read -r a w t <<<"$c"; cell "$a" "$w" "$t"; done
elif [ "${MATRIX:-0}" = 1 ]; then  # all 24 cells of issue 6's table
  echo "| algo | task | threads | metafew s/iter | PyTorch s/iter | speed-up | bare conv GFLOP/s | metafew RSS MB | PyTorch RSS MB | time |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for w in 5 20; do for t in 1 2; do
    for a in maml fomaml metasgd anil protonet reptile; do cell $a $w $t; done
  done; done
elif [ "${ONE_THREAD:-0}" = 1 ]; then  # every row at 1 thread (when the other core is not free)
  for a in maml fomaml metasgd anil protonet; do row $a 1 5 15 32 1 0.4; done
  row maml 1 20 5 16 5 0.1
else
  row maml 2 5 15 32 1 0.4
  row maml 1 5 15 32 1 0.4
  row fomaml 2 5 15 32 1 0.4
  row anil 2 5 15 32 1 0.4
  row protonet 2 5 15 32 1 0.4
  row maml 2 20 5 16 5 0.1
fi
uptime
