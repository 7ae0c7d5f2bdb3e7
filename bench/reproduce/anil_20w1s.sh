#!/usr/bin/env bash
# ANIL, Omniglot 20-way 1-shot (Raghu et al. 2020: 96.2 +- 0.5): MAML's 20-way settings with the inner loop
# on the linear head only (second order through the head's steps).
source "$(dirname "$0")/lib.sh"
iterations 60000 6000
train anil_20w1s --data "$OMNIGLOT" --algo anil --max-pool=false --ways 20 --shots 1 --queries 1 \
  --meta-batch 16 --inner-steps 5 --inner-lr 0.1 --outer-lr 0.001 --eval-steps 10
evaluate anil_20w1s anil_20w1s "96.2 +- 0.5" --ways 20 --shots 1 --queries 1 --episodes 600 --steps 10
