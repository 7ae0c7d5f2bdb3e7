#!/usr/bin/env bash
# Reptile, Omniglot 5-way 5-shot (Nichol et al. 2018: 98.90; 99.48 transductive): the model of
# reptile_5w1s.sh tested with 5 shots.
source "$(dirname "$0")/lib.sh"
iterations 100000 20000
train reptile_5w --data "$OMNIGLOT" --algo reptile --max-pool=false --ways 5 --shots 10 --queries 5 \
  --meta-batch 5 --inner-steps 5 --inner-batch 10 --inner-lr 0.001 --outer-lr 1.0 --schedule linear \
  --eval-steps 50 --test-shots 1 --test-queries 1
evaluate reptile_5w5s reptile_5w "98.90 (99.48 transductive)" --ways 5 --shots 5 --queries 1 --episodes 600 --steps 50
