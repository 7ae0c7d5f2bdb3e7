#!/usr/bin/env bash
# Prototypical Networks, Omniglot 20-way 5-shot (Snell et al. 2017: 98.9): the model of protonet_5w5s.sh.
source "$(dirname "$0")/lib.sh"
iterations - 2500  # published: trained until validation stopped improving; no count stated
train protonet_5shot --data "$OMNIGLOT" --algo protonet --ways 60 --shots 5 --queries 5 \
  --test-ways 5 --test-shots 5 --test-queries 15 --schedule step --schedule-step 2000 --schedule-gamma 0.5
evaluate protonet_20w5s protonet_5shot "98.9" --ways 20 --shots 5 --queries 15 --episodes 1000
