#!/usr/bin/env bash
# Measures metafew bench and the PyTorch reference (../shared/peers/torch_meta.py, tuned as its README) back to
# back for the rows of bench/results/speed.md. Run from anywhere; needs python3-torch and libopenblas0-openmp.
cd "$(dirname "$0")/.."
BL=$(dirname "$(dpkg -L libopenblas0-openmp | grep '/libblas.so.3$' | head -1)")
ref() { env MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=536870912 LD_LIBRARY_PATH=$BL /usr/bin/python3 ../shared/peers/torch_meta.py --mode bench "$@" --warmup 2 --timed 5 2>/dev/null | tail -1; }
row() { # algo threads ways queries mb steps lr
  echo "ROW $*"
  ./build/metafew bench --algo $1 --threads $2 --ways $3 --shots 1 --queries $4 --meta-batch $5 --inner-steps $6 --inner-lr $7 --json 2>/dev/null | jq -c '{algo, threads, s: .seconds_per_iter_median, gflops, peak_fraction, bare: .bare_conv_gflops, rss: .peak_rss_mb}'
  ref --algo $1 --threads $2 --ways $3 --shots 1 --queries $4 --meta-batch $5 --inner-steps $6 --inner-lr $7 | jq -c '{ref_s: .seconds_per_meta_iter_median, ref_rss: .peak_rss_mb}'
}
uptime
if [ "${ONE_THREAD:-0}" = 1 ]; then  # every row at 1 thread (when the other core is not free)
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
