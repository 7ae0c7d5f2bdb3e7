#!/usr/bin/env bash
# Matching Networks, Omniglot 20-way 1-shot (Vinyals et al. 2016: 93.8): trained on 20-way 1-shot episodes
# with 5 queries, otherwise as matchingnet_5w1s.sh (an ablation since session 15; the row is
# matchingnet_supnorm_20w1s.sh).
source "$(dirname "$0")/lib.sh"
iterations - 4000  # published: trained until validation stopped improving; no count stated
train matchingnet_20w1s --data "$OMNIGLOT" --algo matchingnet --ways 20 --shots 1 --queries 5 --meta-batch 1
evaluate matchingnet_20w1s matchingnet_20w1s "93.8" --ways 20 --shots 1 --queries 5 --episodes 600
