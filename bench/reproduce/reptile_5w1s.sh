#!/usr/bin/env bash
# Reptile, Omniglot 5-way 1-shot (Nichol et al. 2018: 95.39; 97.68 transductive). openai/supervised-reptile's
# settings: conv-4 with stride-2 convolutions, 10 training shots per class, 5 inner Adam (beta1 = 0) steps
# of lr 1e-3 on batches of 10, meta-batch 5, meta step 1.0 annealed linearly to 0; test: 50 inner steps,
# 1 query per class; the inner Adam state carried from task to task as its code does (--inner-state carry).
# Batch norm uses the batch statistics of the query set, so the row compares with the transductive figure;
# reptile_5w1s_nontransductive.sh tests the same model non-transductively, reptile_5w5s.sh 5-shot.
source "$(dirname "$0")/lib.sh"
train_reptile_5w
evaluate reptile_5w1s reptile_5w "97.68 transductive (95.39)" --ways 5 --shots 1 --queries 1 --episodes 600 --steps 50
