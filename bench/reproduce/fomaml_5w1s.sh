#!/usr/bin/env bash
# First-order MAML, Omniglot 5-way 1-shot (Finn et al. 2017: 98.3 +- 0.5): maml_5w1s.sh without the
# second-order terms.
source "$(dirname "$0")/lib.sh"
iterations 60000 20000
train fomaml_5w1s --data "$OMNIGLOT" --algo fomaml --max-pool=false --ways 5 --shots 1 --queries 1 \
  --meta-batch 32 --inner-steps 1 --inner-lr 0.4 --outer-lr 0.001 --eval-steps 10
evaluate fomaml_5w1s fomaml_5w1s "98.3 +- 0.5" --ways 5 --shots 1 --queries 1 --episodes 600 --steps 10
