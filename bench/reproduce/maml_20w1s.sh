#!/usr/bin/env bash
# MAML (second order), Omniglot 20-way 1-shot (Finn et al. 2017: 95.8 +- 0.3): meta-batch 16, 5 inner steps
# of 0.1, otherwise as maml_5w1s.sh; test 600 tasks with 10 inner steps.
source "$(dirname "$0")/lib.sh"
iterations 60000 800
train maml_20w1s --data "$OMNIGLOT" --algo maml --max-pool=false --ways 20 --shots 1 --queries 1 \
  --meta-batch 16 --inner-steps 5 --inner-lr 0.1 --outer-lr 0.001 --eval-steps 10
evaluate maml_20w1s maml_20w1s "95.8 +- 0.3" --ways 20 --shots 1 --queries 1 --episodes 600 --steps 10
