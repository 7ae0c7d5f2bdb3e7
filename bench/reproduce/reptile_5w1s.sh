#!/usr/bin/env bash
# Reptile, Omniglot 5-way 1-shot, transductive (Nichol et al. 2018: 97.68 +- 0.04 transductive; 95.39 without).
# Until session 13 this row tested the model shared with the other Reptile rows (train_reptile_5w in lib.sh:
# PROTOCOLS.md's settings, 10 training shots, 5 inner steps on batches of 10, meta-batch 5; 50 test
# steps): 97.53 +- 0.57, 0.11 below the published interval. openai/supervised-reptile's README gives a command
# of its own for this row ("transductive 1-shot 5-way Omniglot", among "the commands used for the paper"):
#   run_omniglot.py --shots 1 --inner-batch 25 --inner-iters 3 --meta-step 1 --meta-batch 10
#     --meta-iters 100000 --eval-batch 25 --eval-iters 5 --learning-rate 0.001 --meta-step-final 0
#     --train-shots 15 --transductive
# This script follows it: 15 training shots per class, 3 inner Adam (beta1 = 0) steps of lr 1e-3 on batches
# of 25, meta-batch 10, meta step 1.0 annealed linearly to 0, 100,000 iterations; test: 5 inner steps, 1 query
# per class, batch norm over the query batch (transductive). supervised-reptile's test batch of 25 drawn
# without replacement from 5 support examples holds each 5 times: the same mean gradient and batch
# statistics as our batch of the 5. Decided in session 13 before training (fidelity to the stated command,
# not a choice on results): the row adopts this run whatever it reaches. Outcome (session 14, 2 h 05 min at
# 2 threads over sessions 13-14): 97.73 +- 0.59, the iteration-78,500 model.
source "$(dirname "$0")/lib.sh"
iterations 100000 100000
train reptile_5w1s_transductive --data "$OMNIGLOT" --algo reptile --max-pool=false --ways 5 --shots 15 \
  --queries 5 --meta-batch 10 --inner-steps 3 --inner-batch 25 --inner-lr 0.001 --outer-lr 1.0 --schedule linear \
  --inner-state carry --eval-steps 5 --test-shots 1 --test-queries 1 --val-episodes 500
evaluate reptile_5w1s reptile_5w1s_transductive "97.68 transductive (95.39)" --ways 5 --shots 1 --queries 1 \
  --episodes 600 --steps 5
