#!/usr/bin/env bash
# Meta-SGD, Omniglot 5-way 1-shot (Li et al. 2017: 99.53): per-parameter inner rates learned with the
# initialisation, one inner step in training and at test; MAML's model and meta-batch 32 otherwise.
# Validation: 500 episodes (2,500 queries) per check. At the default 100 episodes of 1 query per class (500
# queries) the 95% interval of a validation accuracy near 97% is about +-1.5 points, wider than the
# differences between checkpoints late in training, so the pick was mostly noise.
source "$(dirname "$0")/lib.sh"
iterations 60000 20000
train metasgd_5w1s --data "$OMNIGLOT" --algo metasgd --max-pool=false --ways 5 --shots 1 --queries 1 \
  --meta-batch 32 --inner-steps 1 --inner-lr 0.4 --outer-lr 0.001 --eval-steps 1 --val-episodes 500
evaluate metasgd_5w1s metasgd_5w1s "99.53" --ways 5 --shots 1 --queries 1 --episodes 600 --steps 1
