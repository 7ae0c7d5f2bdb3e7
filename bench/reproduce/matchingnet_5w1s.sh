#!/usr/bin/env bash
# Matching Networks (the paper's cosine attention, no full-context embeddings), Omniglot 5-way 1-shot
# (Vinyals et al. 2016: 98.1). conv-4 with max-pool, trained on 5-way 1-shot episodes with 15 queries, Adam
# 1e-3. matchingnet_supnorm_5w1s.sh trains the reference implementation's attention instead; since session 15
# that is the table's row (chosen on the validation split) and this run an ablation: the flat cosine softmax
# learns slowly (bench/results/omniglot.md, Matching Networks).
source "$(dirname "$0")/lib.sh"
iterations - 6000  # published: trained until validation stopped improving; no count stated
train matchingnet_5w1s --data "$OMNIGLOT" --algo matchingnet --ways 5 --shots 1 --queries 15 --meta-batch 1
evaluate matchingnet_5w1s matchingnet_5w1s "98.1" --ways 5 --shots 1 --queries 15 --episodes 600
