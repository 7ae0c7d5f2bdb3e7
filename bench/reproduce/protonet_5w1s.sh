#!/usr/bin/env bash
# Prototypical Networks, Omniglot 5-way 1-shot (Snell et al. 2017: 98.8). Vinyals split with rotations.
# Training as the paper: 60-way episodes, 1 shot, 5 queries per class, Adam 1e-3 halved every 2000 episodes;
# conv-4 with max-pool. Validation on 5-way 1-shot val episodes; test 1000 episodes, 15 queries per class.
# The same model is tested 20-way by protonet_20w1s.sh.
source "$(dirname "$0")/lib.sh"
train_protonet 1
evaluate protonet_5w1s protonet_1shot "98.8" --ways 5 --shots 1 --queries 15 --episodes 1000
