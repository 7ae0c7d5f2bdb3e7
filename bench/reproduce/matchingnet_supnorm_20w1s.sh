#!/usr/bin/env bash
# Matching Networks with supnorm attention (as matchingnet_supnorm_5w1s.sh), Omniglot 20-way 1-shot
# (Vinyals et al. 2016: 93.8): trained on 20-way 1-shot episodes with 5 queries, as matchingnet_20w1s.sh.
# The table's row since session 15, chosen on the validation split (96.58 against the cosine-trained 78.87).
source "$(dirname "$0")/lib.sh"
iterations - 4000  # published: trained until validation stopped improving; no count stated
train matchingnet_supnorm_20w1s --data "$OMNIGLOT" --algo matchingnet --matching-attention supnorm --ways 20 \
  --shots 1 --queries 5 --meta-batch 1
evaluate matchingnet_supnorm_20w1s matchingnet_supnorm_20w1s "93.8" --ways 20 --shots 1 --queries 5 --episodes 600
