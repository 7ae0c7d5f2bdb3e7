#!/usr/bin/env bash
# ANIL, Omniglot 20-way 1-shot (Raghu et al. 2020: 96.2 +- 0.5): MAML's 20-way settings with the inner loop
# on the linear head only (second order through the head's steps). Raghu et al. use "the same model
# architectures as the original MAML authors": cbfinn/maml's Omniglot head reads the last block's output
# averaged over its pixels (--features mean). Its N(0, 1) head initialisation is not used: with it this
# setting never left chance in training (bench/results/omniglot.md). Until session 6 this row flattened the
# output (run anil_20w1s: 94.57 +- 0.41 after 60,000 iterations).
source "$(dirname "$0")/lib.sh"
iterations 60000 60000
train anil_20w1s_mean --data "$OMNIGLOT" --algo anil --max-pool=false --features mean --ways 20 --shots 1 \
  --queries 1 --meta-batch 16 --inner-steps 5 --inner-lr 0.1 --outer-lr 0.001 --eval-steps 10
evaluate anil_20w1s anil_20w1s_mean "96.2 +- 0.5" --ways 20 --shots 1 --queries 1 --episodes 600 --steps 10
