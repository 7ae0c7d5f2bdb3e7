#!/usr/bin/env bash
# Prototypical Networks, Omniglot 5-way 1-shot (Snell et al. 2017: 98.8). Vinyals split with rotations.
# Training as the paper: 60-way episodes, 1 shot, 5 queries per class, Adam 1e-3 halved every 2000 episodes;
# conv-4 with max-pool. Validation on 5-way 1-shot val episodes; test 1000 episodes, 15 queries per class.
# The same model is tested 20-way by protonet_20w1s.sh.
source "$(dirname "$0")/lib.sh"
iterations - 4000  # published: trained until validation stopped improving; no count stated
train protonet_1shot --data "$OMNIGLOT" --algo protonet --ways 60 --shots 1 --queries 5 \
  --test-ways 5 --test-shots 1 --test-queries 15 --schedule step --schedule-step 2000 --schedule-gamma 0.5
evaluate protonet_5w1s protonet_1shot "98.8" --ways 5 --shots 1 --queries 15 --episodes 1000
