#!/usr/bin/env bash
# MAML (second order), Omniglot 5-way 1-shot (Finn et al. 2017: 98.7 +- 0.4). cbfinn/maml's settings:
# conv-4 with stride-2 convolutions (no max-pool), batch statistics always, meta-batch 32, 1 inner step of
# 0.4, Adam 1e-3, 1 query per class; test 600 tasks with 10 inner steps.
source "$(dirname "$0")/lib.sh"
iterations 60000 16000
train maml_5w1s --data "$OMNIGLOT" --algo maml --max-pool=false --ways 5 --shots 1 --queries 1 \
  --meta-batch 32 --inner-steps 1 --inner-lr 0.4 --outer-lr 0.001 --eval-steps 10
evaluate maml_5w1s maml_5w1s "98.7 +- 0.4" --ways 5 --shots 1 --queries 1 --episodes 600 --steps 10
